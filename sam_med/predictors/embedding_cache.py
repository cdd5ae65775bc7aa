"""Encode each needed slice once, reuse it for every object, prompt and click.

An :class:`EmbeddingCache` maps a key ``(axis, slice index, crop)`` to the
image encoder's output for that model input. Keys live inside a *namespace*:
a signature of the volume's data + geometry, the intensity mapping and the
model (name + checkpoint sha256 + precision), so two scans or two models can
never share an entry.

* In memory: LRU, bounded in bytes (default 1 GiB).
* On disk (optional ``cache_dir``): one file per entry under
  ``cache_dir/<namespace>/``; reopening the same scan with the same model
  skips the encoder. Entries are saved with ``torch.save`` (atomically) and read
  back with ``weights_only=True``; each carries its namespace (scan signature,
  intensity, model), its key (view: axis, slice, crop), its shape/dtype and sha256,
  all sealed by an HMAC with this user's cache key (``~/.config/sam-med/cache-key``,
  0600, made on first use), so an entry copied from another scan's folder or another key, or
  rewritten to be self-consistent (other values, another shape) is refused. The
  namespace's ``format.json`` gives the channels, rank and dtype every entry must have.
  An entry failing any check (older entries without the seal too) is re-encoded and
  rewritten, with one warning per call.
* Only the requested keys are encoded, in batches, with a progress callback.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import warnings
from collections import OrderedDict
from pathlib import Path
from typing import Callable, Hashable, Iterable, Sequence

import numpy as np
import torch

from .base import ProgressFn


def array_signature(array: np.ndarray, *extra) -> str:
    """Stable hex digest of an array's bytes, shape, dtype and any extra items."""
    h = hashlib.blake2b(digest_size=16)
    arr = np.ascontiguousarray(array)
    h.update(str((arr.shape, arr.dtype.str)).encode())
    h.update(memoryview(arr).cast("B"))
    for e in extra:
        h.update(repr(e).encode())
    return h.hexdigest()


def tensor_sha256(t: torch.Tensor) -> str:
    """sha256 of a CPU tensor's shape, dtype and bytes."""
    t = t.detach().to("cpu").contiguous()
    h = hashlib.sha256(repr((tuple(t.shape), str(t.dtype))).encode())
    h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


_KEY: bytes | None = None
#: a disk entry larger than this is not read (an embedding is a few MB)
_MAX_ENTRY_BYTES = 256 << 20


def cache_key() -> bytes:
    """This user's secret for sealing disk entries: ``~/.config/sam-med/cache-key`` (or
    ``$SAM_MED_CACHE_KEY``), 32 random bytes, mode 0600, owner checked; made on first use.
    Where it cannot be kept safely a per-process key is used (entries then last one process)."""
    global _KEY
    if _KEY is not None:
        return _KEY
    import stat

    path = Path(os.environ.get("SAM_MED_CACHE_KEY") or Path.home() / ".config" / "sam-med" / "cache-key")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(os.urandom(32))
        except FileExistsError:
            pass
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        with os.fdopen(fd, "rb") as fh:
            st = os.fstat(fh.fileno())
            data = fh.read(33)
        ok = stat.S_ISREG(st.st_mode) and not st.st_mode & 0o077 and len(data) == 32
        if hasattr(os, "geteuid"):
            ok = ok and st.st_uid == os.geteuid()
        _KEY = data if ok else os.urandom(32)
    except OSError:
        _KEY = os.urandom(32)
    return _KEY


def entry_seal(namespace: str, key: str, shape, dtype: str, sha256: str) -> str:
    """HMAC-SHA256 (this user's :func:`cache_key`) binding an entry to its namespace and key."""
    import hmac

    msg = json.dumps([namespace, key, list(shape), dtype, sha256]).encode()
    return hmac.new(cache_key(), msg, hashlib.sha256).hexdigest()


def _entry_problem(blob, key: str, expected: tuple[tuple[int, ...], str] | None,
                   namespace: str | None = None) -> str | None:
    """Why a loaded disk entry cannot be used (None when it is sound)."""
    import hmac

    if not isinstance(blob, dict):
        return "not an entry"
    if blob.get("key") != key:
        return "key differs"
    if namespace is not None and blob.get("namespace") != namespace:
        return "it belongs to another scan, view or model (namespace differs)"
    emb = blob.get("embedding")
    if not isinstance(emb, torch.Tensor):
        return "no embedding tensor"
    shape, dtype = tuple(emb.shape), str(emb.dtype)
    if "sha256" not in blob:
        return "older entry format without a checksum"
    if blob.get("shape") != list(shape) or blob.get("dtype") != dtype:
        return f"shape/dtype {shape} {dtype} differ from the recorded ones"
    if expected is not None and (len(shape) != len(expected[0]) or shape[0] != expected[0][0] or dtype != expected[1]):
        # channels, rank and dtype are the namespace's; the spatial size may differ between
        # entries (a reduced r x r encoder input gives an r/4 x r/4 embedding)
        return f"shape/dtype {shape} {dtype}, expected ({expected[0][0]}, ...) {expected[1]}"
    if namespace is not None:
        seal = blob.get("seal")
        if not isinstance(seal, str):
            return "older entry format without a seal"
        if not hmac.compare_digest(seal, entry_seal(namespace, key, shape, dtype, str(blob.get("sha256")))):
            return "seal mismatch (written with another key, or edited)"
    if blob.get("sha256") != tensor_sha256(emb):
        return "checksum mismatch"
    if emb.is_floating_point() and not bool(torch.isfinite(emb).all()):
        return "non-finite values"
    return None


class EmbeddingCache:
    """LRU cache of image embeddings with an optional on-disk store."""

    def __init__(self, max_bytes: int = 1 << 30, cache_dir: str | os.PathLike | None = None) -> None:
        self.max_bytes = int(max_bytes)
        self.cache_dir = Path(cache_dir) if cache_dir else None
        self._mem: OrderedDict[tuple, torch.Tensor] = OrderedDict()
        self._bytes = 0
        self._lock = threading.RLock()
        self.hits = 0
        self.misses = 0
        self.disk_hits = 0
        self.encoded = 0
        #: problems found in disk entries (each re-encoded); a warning summarises them per call
        self.rejected: list[str] = []
        self._format: dict[str, tuple[tuple[int, ...], str]] = {}

    # ------------------------------------------------------------ memory
    def _put(self, key: tuple, value: torch.Tensor) -> None:
        with self._lock:
            if key in self._mem:
                self._bytes -= self._mem.pop(key).nbytes
            self._mem[key] = value
            self._bytes += value.nbytes
            while self._bytes > self.max_bytes and len(self._mem) > 1:
                _, old = self._mem.popitem(last=False)
                self._bytes -= old.nbytes

    def _get(self, key: tuple) -> torch.Tensor | None:
        with self._lock:
            v = self._mem.get(key)
            if v is not None:
                self._mem.move_to_end(key)
            return v

    def __len__(self) -> int:
        return len(self._mem)

    @property
    def nbytes(self) -> int:
        return self._bytes

    def clear(self) -> None:
        with self._lock:
            self._mem.clear()
            self._bytes = 0

    # ------------------------------------------------------------ disk
    def _path(self, namespace: str, key: Hashable) -> Path | None:
        if self.cache_dir is None:
            return None
        name = hashlib.blake2b(repr(key).encode(), digest_size=12).hexdigest()
        return self.cache_dir / namespace / f"{name}.pt"

    def _expected(self, namespace: str) -> tuple[tuple[int, ...], str] | None:
        """(shape, dtype) every entry of ``namespace`` must have: from an entry encoded in this
        process, else from the namespace's ``format.json`` written with its first entry."""
        if namespace in self._format:
            return self._format[namespace]
        if self.cache_dir is None:
            return None
        f = self.cache_dir / namespace / "format.json"
        from ..errors import SamMedError
        from ..io.guards import read_bytes_limited

        try:
            if not f.is_file():
                return None
            rec = json.loads(read_bytes_limited(f, 1 << 16, "cache format record"))
            fmt = (tuple(int(x) for x in rec["shape"]), str(rec["dtype"]))
        except (OSError, ValueError, KeyError, TypeError, SamMedError):
            return None
        self._format[namespace] = fmt
        return fmt

    def _load_disk(self, namespace: str, key: Hashable) -> torch.Tensor | None:
        """A verified disk entry, or None (missing). A corrupt entry (unreadable, wrong key,
        checksum, shape, dtype or non-finite values) is counted in ``self.rejected``
        and returns None, so the caller re-encodes it."""
        p = self._path(namespace, key)
        if p is None or not p.is_file():
            return None
        why = None
        import stat

        try:
            st = os.stat(p)
            if not stat.S_ISREG(st.st_mode) or st.st_size > _MAX_ENTRY_BYTES:
                raise ValueError("not a regular file of a plausible size")
            blob = torch.load(p, map_location="cpu", weights_only=True)
        except Exception as exc:
            blob, why = None, f"unreadable ({exc.__class__.__name__})"
        if why is None:
            why = _entry_problem(blob, repr(key), self._expected(namespace), namespace)
        if why is not None:
            self.rejected.append(f"{p.name}: {why}")
            return None
        return blob["embedding"]

    def _save_disk(self, namespace: str, key: Hashable, value: torch.Tensor) -> None:
        p = self._path(namespace, key)
        if p is None:
            return
        from ..io.atomic import atomic_torch_save, atomic_write_text

        value = value.contiguous()
        fmt = (tuple(value.shape), str(value.dtype))
        if namespace not in self._format:
            self._format[namespace] = fmt
            atomic_write_text(p.parent / "format.json", json.dumps({"shape": list(fmt[0]), "dtype": fmt[1]}))
        digest = tensor_sha256(value)
        atomic_torch_save({"key": repr(key), "namespace": namespace, "embedding": value, "shape": list(fmt[0]),
                           "dtype": fmt[1], "sha256": digest,
                           "seal": entry_seal(namespace, repr(key), fmt[0], fmt[1], digest)}, p)

    # ------------------------------------------------------------ main API
    def contains(self, namespace: str, key: Hashable) -> bool:
        return self._get((namespace, key)) is not None

    def get_many(
        self,
        namespace: str,
        keys: Sequence[Hashable],
        make_input: Callable[[Hashable], torch.Tensor],
        encode: Callable[[torch.Tensor], torch.Tensor],
        batch_size: int = 4,
        progress: ProgressFn | None = None,
    ) -> list[torch.Tensor]:
        """Embeddings for ``keys``: cached ones are reused, the rest are encoded.

        ``make_input(key)`` returns the model input (C, H, W) for one key;
        ``encode(batch)`` maps (B, C, H, W) to (B, ...) embeddings.
        ``progress(done, total, "encode")`` is called after each batch.
        """
        out: dict[Hashable, torch.Tensor] = {}
        todo: list[Hashable] = []
        n_rejected = len(self.rejected)
        for key in dict.fromkeys(keys):  # unique, order kept
            v = self._get((namespace, key))
            if v is None:
                v = self._load_disk(namespace, key)
                if v is not None:
                    self.disk_hits += 1
                    self._put((namespace, key), v)
            if v is None:
                todo.append(key)
            else:
                self.hits += 1
                out[key] = v
        self.misses += len(todo)
        if len(self.rejected) > n_rejected:
            bad = self.rejected[n_rejected:]
            warnings.warn(f"embedding cache: {len(bad)} corrupt or unverifiable entr{'y' if len(bad) == 1 else 'ies'} "
                          f"re-encoded (first: {bad[0]})", RuntimeWarning, stacklevel=2)
        total = len(todo)
        if progress and total:
            progress(0, total, "encode")
        for start in range(0, total, batch_size):
            chunk = todo[start : start + batch_size]
            batch = torch.stack([make_input(k) for k in chunk])
            emb = encode(batch)
            for k, e in zip(chunk, emb):
                e = e.detach().to("cpu").clone()
                out[k] = e
                self._put((namespace, k), e)
                self._save_disk(namespace, k, e)
            self.encoded += len(chunk)
            if progress:
                progress(min(start + batch_size, total), total, "encode")
        return [out[k] for k in keys]

    def keys(self, namespace: str) -> Iterable[Hashable]:
        return [k for (ns, k) in list(self._mem) if ns == namespace]

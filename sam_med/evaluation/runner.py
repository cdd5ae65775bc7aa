"""Run a prompt protocol over a dataset and record per-case / per-object / per-click results.

For every case: load image + label (``load_s``), optionally ``predictor.prepare(image)``
(``prepare_s``: an up-front encode phase, ``EvalConfig.prepare``), then
for every label of interest one :class:`~sam_med.session.Session` object is
prompted by the protocol (:mod:`.protocols`); each state yields one record
with Dice / NSD / HD95 on the volume's physical spacing and ``step_s`` (the
predictor call: decode + propagation, plus any lazy encoding, which the
predictor may report separately in ``PredictionResult.info`` -> ``info_*``
columns). ``peak_rss_mb`` is the process's resident-memory high-water mark
after the case (``resource.getrusage``; monotonic over the run), and
``peak_cuda_mb`` the CUDA allocator's peak during the case when a GPU is used.

Failures never stop the run: a case that cannot be loaded (missing file, label
on another grid, no ``gts``) gives one record with ``status="failed"`` and the
reason in ``error``; an object whose label is empty or whose prediction raises
gives a failed record for that object, and the other objects go on.

Records are appended, one JSON line per finished case, to
``OUT/records.rank<R>.jsonl``; ``resume=True`` skips every case that already
has a line there (a case interrupted half-way is run again from scratch).
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..errors import SamMedError
from ..session import Session
from .datasets import EvalCase, EvalDataset
from .distributed import DistContext
from .metrics import DEFAULT_NSD_TOLERANCE_MM, all_metrics
from .protocols import PROTOCOLS, object_rng, run_protocol

RECORD_GLOB = "records.rank*.jsonl"


@dataclass
class EvalConfig:
    protocol: str = "box"
    clicks: int = 0
    jitter_mm: float = 0.0
    seed: int = 0
    nsd_tolerance_mm: float = DEFAULT_NSD_TOLERANCE_MM
    model: str = "lite_medsam"
    device: str = "cpu"
    options: dict[str, Any] = field(default_factory=dict)
    #: call ``predictor.prepare(image)`` before prompting (the GUI's "Prepare": e.g. encode
    #: every whole slice). Off by default: predictors encode what a prompt needs lazily
    #: (zoomed crops), and an up-front whole-volume encode would be wasted work and time.
    prepare: bool = False

    def __post_init__(self) -> None:
        if self.protocol not in PROTOCOLS:
            raise SamMedError(f"unknown protocol {self.protocol!r}; choose one of {', '.join(PROTOCOLS)}")
        if self.clicks < 0:
            raise SamMedError(f"--clicks must be >= 0, got {self.clicks}")
        if self.protocol == "points" and self.clicks < 1:
            raise SamMedError("the 'points' protocol needs --clicks N >= 1")
        if self.jitter_mm < 0:
            raise SamMedError(f"--jitter-mm must be >= 0, got {self.jitter_mm}")

    def identity(self) -> dict:
        """The settings that decide the numbers (a resumed run must match them)."""
        d = asdict(self)
        d.pop("device")
        return d


def _err(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def _peak_rss_mb() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r / (1024 * 1024) if sys.platform == "darwin" else r / 1024


def evaluate_case(case: EvalCase, predictor, config: EvalConfig) -> list[dict]:
    """All records of one case (never raises for bad data; see the module docstring)."""
    base = {"case_id": case.case_id, "protocol": config.protocol}
    cuda = _cuda_reset(config.device)
    t0 = time.perf_counter()
    try:
        image, label = case.load()
    except (SamMedError, OSError, ValueError) as exc:
        return [{**base, "status": "failed", "error": _err(exc), "load_s": time.perf_counter() - t0}]
    load_s = time.perf_counter() - t0
    objects = case.objects(label)
    if not objects:
        return [{**base, "status": "failed", "load_s": load_s,
                 "error": f"EmptyLabel: the label map {case.label or case.image} has no foreground voxels"}]
    t0 = time.perf_counter()
    try:
        if config.prepare and hasattr(predictor, "prepare"):
            predictor.prepare(image)
    except Exception as exc:  # a predictor failure is this case's failure, not the run's
        return [{**base, "status": "failed", "load_s": load_s, "error": _err(exc),
                 "traceback": traceback.format_exc(limit=5)}]
    prepare_s = time.perf_counter() - t0
    spacing = image.spacing
    common = {**base, "load_s": load_s, "prepare_s": prepare_s,
              "spacing": " ".join(f"{s:.6g}" for s in spacing), "shape": " ".join(map(str, image.shape))}
    session = Session(image, predictor, max_undo=0)  # no undo history: memory stays flat per label
    records: list[dict] = []
    for value, name in objects:
        head = {**common, "label": int(value), "name": name}
        ref = label.array == value
        if not ref.any():
            records.append({**head, "status": "failed",
                            "error": f"EmptyLabel: label {value} ({name}) has no voxels in this case"})
            continue
        obj = session.add_object(name=name, id=int(value))
        rng = object_rng(config.seed, case.case_id, value)
        try:
            for st in run_protocol(session, obj.id, ref, config.protocol, config.clicks,
                                   spacing=spacing, jitter_mm=config.jitter_mm, rng=rng):
                m = all_metrics(st.mask, ref, spacing, config.nsd_tolerance_mm)
                rec = {**head, "status": "ok", "step": st.step, "prompt": st.prompt,
                       "click": " ".join(map(str, st.click)) if st.click is not None else "",
                       "box": " ".join(f"{c:g}" for c in st.box) if st.box is not None else "",
                       "carried": st.carried, "step_s": st.seconds, **m}
                rec.update({f"info_{k}": v for k, v in st.info.items()})
                records.append(rec)
        except Exception as exc:
            records.append({**head, "status": "failed", "error": _err(exc),
                            "traceback": traceback.format_exc(limit=5)})
        session.remove_object(obj.id)  # keep memory flat on many-label cases
    peak = _peak_rss_mb()
    cuda_peak = _cuda_peak(cuda)
    for r in records:
        r["peak_rss_mb"] = peak
        if cuda_peak is not None:
            r["peak_cuda_mb"] = cuda_peak
    return records


def _cuda_reset(device: str):
    if not str(device).startswith("cuda"):
        return None
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
            return torch
    except Exception:  # pragma: no cover
        return None
    return None


def _cuda_peak(torch_mod) -> float | None:
    if torch_mod is None:
        return None
    return torch_mod.cuda.max_memory_allocated() / 2**20


# ------------------------------------------------------------------ run files
def read_finished(out_dir: Path) -> dict[str, list[dict]]:
    """case_id -> records, from every rank's jsonl in ``out_dir`` (a torn last line is ignored)."""
    done: dict[str, list[dict]] = {}
    for f in sorted(Path(out_dir).glob(RECORD_GLOB)):
        with open(f) as fh:
            for line in fh:
                try:
                    item = json.loads(line)
                except ValueError:
                    continue
                done[item["case_id"]] = item["records"]
    return done


def _check_resume_config(out_dir: Path, config: EvalConfig, resume: bool) -> None:
    cfg_path = out_dir / "config.json"
    if cfg_path.is_file() and resume:
        old = json.loads(cfg_path.read_text())
        if old != config.identity():
            diff = {k: (old.get(k), v) for k, v in config.identity().items() if old.get(k) != v}
            raise SamMedError(
                f"{out_dir}: --resume with different settings than the interrupted run ({diff}); "
                "use another --out folder"
            )


@dataclass
class RunResult:
    records: list[dict]
    summary: dict | None
    out_dir: Path
    cases: int
    cases_failed: int

    @property
    def all_failed(self) -> bool:
        return self.cases > 0 and self.cases_failed == self.cases


def run_evaluation(
    dataset: EvalDataset,
    predictor_factory: Callable[[], Any] | Any,
    config: EvalConfig,
    out_dir: str | os.PathLike,
    *,
    resume: bool = False,
    progress: bool = True,
    dist: DistContext | None = None,
    write_reports: bool = True,
) -> RunResult:
    """Evaluate ``dataset``; returns all records (on rank 0; other ranks get their own).

    ``predictor_factory`` is a predictor or a zero-argument callable building one
    (called once per process, after the cases to run are known, so a fully
    resumed run never loads a model).
    """
    from tqdm.auto import tqdm

    dist = dist or DistContext()
    out = Path(out_dir)
    err = None
    if dist.is_main:
        try:
            out.mkdir(parents=True, exist_ok=True)
            _check_resume_config(out, config, resume)
            if not resume:
                for f in out.glob(RECORD_GLOB):
                    f.unlink()
            (out / "config.json").write_text(json.dumps(config.identity(), indent=1))
        except (SamMedError, OSError) as exc:
            err = str(exc)
    err = dist.broadcast(err)  # also the barrier: other ranks wait for the folder
    if err:
        raise SamMedError(err)

    finished = read_finished(out) if resume else {}
    mine = dist.shard(dataset.cases)
    todo = [c for c in mine if c.case_id not in finished]
    per_case: dict[str, list[dict]] = {c.case_id: finished[c.case_id] for c in mine if c.case_id in finished}

    predictor = None
    if todo:
        predictor = predictor_factory() if callable(predictor_factory) and not hasattr(
            predictor_factory, "predict") else predictor_factory
    rec_path = out / f"records.rank{dist.rank}.jsonl"
    bar = tqdm(todo, desc=f"evaluate ({config.protocol})", unit="case",
               disable=not progress or not dist.is_main, dynamic_ncols=True)
    for case in bar:
        bar.set_postfix_str(case.case_id[:40])
        recs = evaluate_case(case, predictor, config)
        per_case[case.case_id] = recs
        with open(rec_path, "a") as fh:  # one line per case: resume granularity
            fh.write(json.dumps({"case_id": case.case_id, "records": recs}, default=_json_default) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
    bar.close()

    gathered = dist.gather(per_case)
    if not dist.is_main:
        return RunResult([r for rs in per_case.values() for r in rs], None, out, len(mine),
                         sum(_case_failed(rs) for rs in per_case.values()))
    merged: dict[str, list[dict]] = {}
    for part in gathered:
        merged.update(part)
    records = [r for c in dataset.cases for r in merged.get(c.case_id, [])]
    failed = sum(_case_failed(merged.get(c.case_id, [])) for c in dataset.cases)
    summary = None
    if write_reports:
        from .report import write_reports as _write

        summary = _write(records, out, config, dataset)
    return RunResult(records, summary, out, len(dataset.cases), failed)


def _case_failed(recs: list[dict]) -> bool:
    return not any(r.get("status") == "ok" for r in recs)


def _json_default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)

"""Training/held-out slices from several datasets, along several axes, with encoded copies.

A fine-tune config may list ``data.sources`` instead of one ``data.dataset``::

    data:
      sources:
        - {name: ct_lesion, dataset: ../shared/data/ct_lesion, cases: [CT_Lesion_000001_02_01_008-023],
           axes: [0, 1, 2], slices_per_object: 4}
        - {name: totalseg_ct, image: ../shared/data/totalseg/example_ct_sm.nii.gz,
           label: ../shared/data/totalseg/example_seg.nii.gz, labels: [1, 2, 5], axes: [0, 1, 2],
           slices_per_object: 3}
        - {name: brain_mr, image: ../shared/data/mr_brain/brain1_image.nrrd,
           label: ../shared/data/mr_brain/brain1_label.nrrd, labels: [1],
           copies: [{flip: true}, {gamma: 0.7, contrast: 1.2}]}
      heldout: [...same form...]      # never trained on; checked for overlap, read by benchmarks

Per source: ``dataset`` (anything :func:`~sam_med.evaluation.open_dataset` reads) with
optional ``cases``, or one ``image`` + ``label`` pair (``case_id`` defaults to ``name``);
``labels`` (values of interest; default all); ``axes`` (slicing axes; default the scan's
slicing axis); ``slices_per_object`` (cap per object *and axis*: the object's largest slice
on that axis plus slices spread evenly through it; None = every slice); ``min_area``
(plane pixels; smaller cross-sections are skipped); ``isotropic`` (default true: an
anisotropic plane, e.g. a sagittal cut of 5 mm CT slices, is resampled to square pixels
before the model sees it); ``copies`` (augmented copies of every slice, each encoded once:
``flip`` left-right, ``gamma``, ``contrast`` (scale about the mean), ``noise`` (std on the
0..255 scale)); ``zoom`` (``auto``: the slice-wise predictor's crop rule for small
objects; ``never``: whole planes); ``clicks: errors3d`` (instead of slices: samples where the
CVPR 2025 clicks land on the predictor's own 3D errors, ``click_rounds`` rounds, ``neighbours``
slices each side; see :mod:`.errors3d`).

Each sample is cut as the slice-wise predictor does at inference (the model config's
intensity mapping, the plane layout of :class:`~sam_med.predictors.planes.PlaneGeometry`,
the same zoom crop for small objects); the plain axial samples reuse exactly the
predictor's :class:`EmbeddingCache` entries (same namespace and key), resampled or
augmented ones get keys of their own in the same namespace.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
from scipy import ndimage

from ..errors import SamMedError
from .paths import resolve_dataset

__all__ = ["SourceSpec", "parse_sources", "source_cases", "plan_slices", "extract_source_slices",
           "check_disjoint", "apply_copy"]

_KEYS = {"name", "dataset", "cases", "image", "label", "case_id", "labels", "label_names", "axes",
         "slices_per_object", "min_area", "isotropic", "copies", "zoom", "clicks", "click_rounds", "neighbours"}
_COPY_KEYS = {"flip", "gamma", "contrast", "noise", "seed"}


@dataclass
class SourceSpec:
    name: str
    dataset: str | None = None
    cases: list[str] | None = None
    image: str | None = None
    label: str | None = None
    case_id: str | None = None
    labels: tuple[int, ...] | None = None
    label_names: dict[int, str] = field(default_factory=dict)
    axes: list[int] | None = None
    slices_per_object: int | None = None
    min_area: int = 16
    isotropic: bool = True
    copies: list[dict] = field(default_factory=list)
    zoom: str = "auto"
    clicks: str | None = None  # "errors3d": samples where the CVPR25 clicks land (.errors3d)
    click_rounds: int = 5
    neighbours: int = 1


def parse_sources(raw: Sequence[dict] | None, what: str = "data.sources") -> list[SourceSpec]:
    out: list[SourceSpec] = []
    names = set()
    for i, s in enumerate(raw or []):
        if not isinstance(s, dict):
            raise SamMedError(f"{what}[{i}] must be a mapping, got {s!r}")
        unknown = set(s) - _KEYS
        if unknown:
            raise SamMedError(f"{what}[{i}]: unknown keys {sorted(unknown)}; known: {sorted(_KEYS)}")
        name = str(s.get("name") or f"source{i}")
        if name in names:
            raise SamMedError(f"{what}: duplicate source name {name!r}")
        names.add(name)
        if bool(s.get("dataset")) == bool(s.get("image")):
            raise SamMedError(f"{what}[{i}] ({name}): give either 'dataset' or 'image' (+ 'label')")
        axes = s.get("axes")
        if axes is not None:
            axes = [int(a) for a in axes]
            if not axes or any(a not in (0, 1, 2) for a in axes):
                raise SamMedError(f"{what}[{i}] ({name}): axes must be a list of 0, 1, 2")
        copies = list(s.get("copies") or [])
        for c in copies:
            if not isinstance(c, dict) or set(c) - _COPY_KEYS:
                raise SamMedError(f"{what}[{i}] ({name}): copies take {sorted(_COPY_KEYS)}, got {c!r}")
        if s.get("zoom", "auto") not in ("auto", "never"):
            raise SamMedError(f"{what}[{i}] ({name}): zoom must be auto or never")
        if s.get("clicks") not in (None, "errors3d"):
            raise SamMedError(f"{what}[{i}] ({name}): clicks must be errors3d (or absent)")
        from ..evaluation import parse_labels

        labels = parse_labels(s.get("labels"))
        names_map = s.get("label_names") or {}
        if isinstance(names_map, (list, tuple)):
            names_map = dict(zip(labels or (), names_map))
        out.append(SourceSpec(
            name=name, dataset=resolve_dataset(s["dataset"]) if s.get("dataset") else None,
            cases=list(s["cases"]) if s.get("cases") else None,
            image=resolve_dataset(s["image"]) if s.get("image") else None,
            label=resolve_dataset(s["label"]) if s.get("label") else None, case_id=s.get("case_id"),
            labels=labels, label_names={int(k): str(v) for k, v in dict(names_map).items()}, axes=axes,
            slices_per_object=int(s["slices_per_object"]) if s.get("slices_per_object") else None,
            min_area=int(s.get("min_area", 16)), isotropic=bool(s.get("isotropic", True)),
            copies=copies, zoom=str(s.get("zoom", "auto")), clicks=s.get("clicks"),
            click_rounds=int(s.get("click_rounds", 5)), neighbours=int(s.get("neighbours", 1))))
    return out


def source_cases(spec: SourceSpec) -> list:
    """The :class:`~sam_med.evaluation.EvalCase` list of one source."""
    from ..evaluation import EvalCase, open_dataset

    if spec.image:
        if not os.path.exists(spec.image):
            raise SamMedError(f"source {spec.name}: image not found: {spec.image}")
        return [EvalCase(case_id=spec.case_id or spec.name, image=spec.image, label=spec.label,
                         labels=spec.labels, label_names=dict(spec.label_names))]
    ds = open_dataset(spec.dataset, labels=spec.labels)
    by_id = {c.case_id: c for c in ds.cases}
    if spec.cases is None:
        return list(ds.cases)
    missing = [c for c in spec.cases if c not in by_id]
    if missing:
        raise SamMedError(f"source {spec.name}: cases not in {ds.root}: {missing}; available: {sorted(by_id)}")
    return [by_id[c] for c in spec.cases]


def _object_keys(specs: Sequence[SourceSpec]) -> set[tuple[str, int]]:
    """(resolved image path, label value) of every object the specs name (None = all)."""
    keys = set()
    for spec in specs:
        for case in source_cases(spec):
            img = str(Path(case.image).resolve())
            if case.labels is None:
                keys.add((img, -1))  # every object of this image
            else:
                keys.update((img, int(v)) for v in case.labels)
    return keys


def check_disjoint(train: Sequence[SourceSpec], heldout: Sequence[SourceSpec]) -> None:
    """Raise when a held-out (image, object) is also a training one."""
    a, b = _object_keys(train), _object_keys(heldout)
    imgs_a = {i for i, v in a if v == -1}
    imgs_b = {i for i, v in b if v == -1}
    clash = sorted((a & b) | {k for k in b if k[0] in imgs_a} | {k for k in a if k[0] in imgs_b})
    if clash:
        raise SamMedError(f"held-out objects also in the training sources: {clash[:5]}")


def plan_slices(ref: np.ndarray, geo, cap: int | None, min_area: int = 1) -> tuple[list[int], int | None]:
    """Slices of ``ref`` (3D bool) on ``geo``'s axis to use: every slice with at least
    ``min_area`` pixels, or ``cap`` of them (the largest + evenly spread through the object).
    Returns (sorted slice indices, the largest slice)."""
    axis = geo.axis
    other = tuple(a for a in range(3) if a != axis)
    areas = ref.sum(axis=other)
    ks = [int(k) for k in np.flatnonzero(areas >= max(1, min_area))]
    if not ks:
        return [], None
    kmax = int(max(ks, key=lambda k: (areas[k], -k)))
    if cap and len(ks) > cap:
        pos = np.unique(np.rint(np.linspace(0, len(ks) - 1, cap + 2)[1:-1]).astype(int))
        chosen = [ks[i] for i in pos]
        if kmax not in chosen:
            j = int(np.argmin([abs(k - kmax) for k in chosen]))
            chosen[j] = kmax
        ks = sorted(set(chosen))
    return ks, kmax


def _iso_size(hw: tuple[int, int], spacing_qp: tuple[float, float]) -> tuple[tuple[int, int], tuple[float, float]]:
    """Plane ``(H, W)`` with pixel spacing (rows, cols) -> square-pixel size and the factors."""
    sq, sp = float(spacing_qp[0]), float(spacing_qp[1])
    t = min(sq, sp)
    fy, fx = sq / t, sp / t
    if max(fy, fx) < 1.05:  # within 5 %: leave as is
        return tuple(hw), (1.0, 1.0)
    return (max(1, int(round(hw[0] * fy))), max(1, int(round(hw[1] * fx)))), (fy, fx)


def _resample(plane: np.ndarray, size: tuple[int, int], label: bool) -> np.ndarray:
    if tuple(plane.shape) == tuple(size):
        return plane
    z = (size[0] / plane.shape[0], size[1] / plane.shape[1])
    out = ndimage.zoom(plane.astype(np.float32), z, order=1, mode="nearest", grid_mode=True)
    if out.shape != tuple(size):  # zoom rounds its own way; fix a 1 px difference
        out = out[: size[0], : size[1]]
        out = np.pad(out, ((0, size[0] - out.shape[0]), (0, size[1] - out.shape[1])), mode="edge")
    return out >= 0.5 if label else out


def apply_copy(img: np.ndarray, lab: np.ndarray, copy: dict | None, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """An augmented copy of a 2D slice (0..255 float) and its label (see the module doc)."""
    if not copy:
        return img, lab
    img = np.asarray(img, dtype=np.float32)
    if copy.get("flip"):
        img, lab = img[:, ::-1], lab[:, ::-1]
    if copy.get("gamma"):
        img = 255.0 * np.power(np.clip(img, 0, 255) / 255.0, float(copy["gamma"]))
    if copy.get("contrast"):
        m = float(img.mean())
        img = m + (img - m) * float(copy["contrast"])
    if copy.get("noise"):
        rng = np.random.default_rng(int(copy.get("seed", seed)))
        img = img + rng.normal(0.0, float(copy["noise"]), img.shape).astype(np.float32)
    return np.ascontiguousarray(np.clip(img, 0, 255), dtype=np.float32), np.ascontiguousarray(lab)


def _copy_tag(copy: dict | None) -> str:
    return "" if not copy else ",".join(f"{k}={copy[k]}" for k in sorted(copy))


def extract_source_slices(specs: Sequence[SourceSpec], loaded, cache=None, *, with_embeddings: bool = True,
                          predictor_options: dict | None = None, log: Callable[[str], None] | None = None,
                          progress=None) -> list[dict]:
    """Labelled 2D samples of every source (see the module docstring).

    Each dict: ``image (1, H, W)`` float32 0..255 (the exact model-input region),
    ``label (1, H, W)`` uint8, ``source``, ``case_id``, ``object``, ``name``, ``axis``,
    ``slice``, ``copy`` (tag, "" for the original), ``largest`` (the object's largest
    slice on this axis), ``largest_acq`` (largest slice on the scan's own slicing axis),
    ``crop``, ``iso`` (resample factors), and ``embedding`` ``(256, 64, 64)`` with
    ``with_embeddings``.
    """
    import torch

    from ..evaluation.protocols import tight_box
    from ..predictors.embedding_cache import EmbeddingCache
    from ..predictors.planes import PlaneGeometry
    from ..predictors.slicewise import SliceWisePredictor

    cache = cache if cache is not None else EmbeddingCache()
    out: list[dict] = []
    for spec in specs:
        n0, enc0 = len(out), cache.encoded
        if spec.clicks == "errors3d":  # samples where the model's own 3D errors get clicked
            from .errors3d import errors3d_source_slices

            out.extend(errors3d_source_slices(spec, source_cases(spec), loaded, cache, predictor_options, log))
            continue
        for case in source_cases(spec):
            image, label = case.load()
            pred = SliceWisePredictor(loaded=loaded, cache=cache, **dict(predictor_options or {}))
            pred.bind(image)
            spacing = np.asarray(image.spacing, dtype=float)
            acq = image.slice_axis
            for value, oname in case.objects(label):
                ref = label.array == value
                box = tight_box(ref)
                if box is None:
                    continue
                for axis in (spec.axes if spec.axes is not None else [acq]):
                    geo = PlaneGeometry(axis, image.shape)
                    p, q = geo.inplane
                    hw0 = geo.hw
                    size, fac = _iso_size(hw0, (spacing[q], spacing[p])) if spec.isotropic else (hw0, (1.0, 1.0))
                    ks, kmax = plan_slices(ref, geo, spec.slices_per_object, spec.min_area)
                    if not ks:
                        continue
                    _, b2 = geo.box_to_plane(*box.int_bounds())
                    ext = np.array([b2[0] * fac[1], b2[1] * fac[0], (b2[2] + 1) * fac[1] - 1,
                                    (b2[3] + 1) * fac[0] - 1])
                    crop = None if spec.zoom == "never" else pred.choose_crop(np.rint(ext).astype(int), size, False)
                    plain = fac == (1.0, 1.0)
                    samples = []
                    for k in ks:
                        img = _resample(np.asarray(pred.slice_image(geo, k), dtype=np.float32), size, False)
                        lab = _resample(geo.slice_of(ref, k), size, True)
                        if crop is not None:
                            x0, y0, x1, y1 = crop
                            img, lab = img[y0:y1 + 1, x0:x1 + 1], lab[y0:y1 + 1, x0:x1 + 1]
                        if not lab.any():
                            continue
                        for ci, cp in enumerate([None] + list(spec.copies)):
                            im2, lb2 = apply_copy(img, lab, cp, seed=int(k) * 31 + ci)
                            tag = _copy_tag(cp)
                            key = ("s", int(k), crop) if plain and not tag else \
                                ("t", int(k), crop, (round(fac[0], 4), round(fac[1], 4)), tag)
                            samples.append((key, im2, lb2, k, tag))
                    embs: dict = {}
                    if with_embeddings and samples:
                        ns = pred.embedding_namespace(axis)
                        inputs = {s[0]: s[1] for s in samples}

                        def make_input(key, _inputs=inputs):
                            return loaded.preprocess(np.ascontiguousarray(_inputs[key]))[0]

                        def encode(batch):
                            with torch.inference_mode():
                                return loaded.encode(batch)

                        keys = [s[0] for s in samples]
                        embs = dict(zip(keys, cache.get_many(ns, keys, make_input, encode, 1)))
                    for key, im2, lb2, k, tag in samples:
                        item: dict[str, Any] = {
                            "image": np.ascontiguousarray(im2)[None].astype(np.float32),
                            "label": np.ascontiguousarray(lb2)[None].astype(np.uint8),
                            "source": spec.name, "case_id": case.case_id, "object": int(value), "name": oname,
                            "axis": int(axis), "slice": int(k), "copy": tag, "largest": int(k) == kmax,
                            "largest_acq": axis == acq and int(k) == kmax, "crop": crop, "iso": fac}
                        if with_embeddings:
                            item["embedding"] = embs[key]
                        out.append(item)
        if log:
            log(f"[sources] {spec.name}: {len(out) - n0} slices, {cache.encoded - enc0} encoded")
        if progress:
            progress(spec.name, len(out) - n0)
    return out

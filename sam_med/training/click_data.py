"""Whole-slice samples for click training, encoded through the slice-wise engine's own cache.

The unit of encoding is a *scan slice*, not an object: every labelled object crossing a
chosen slice becomes a sample of that slice, so one encode serves all the organs (and
targets) of a head-and-neck slice, or both hippocampus parts. Slices are chosen per scan:
``slices_per_case`` of them spread evenly through the range where any object of interest
lies (the largest cross-section of each object is not forced in: the point is many scans
and objects, few slices each).

Embeddings come from :class:`~sam_med.predictors.slicewise.SliceWisePredictor` itself
(``predictor.embeddings(geo, ks)``: the whole-slice view at the model's input size, the
engine's namespace and key), so with ``cache_dir`` shared with evaluation runs, every
slice encoded here is one the engine will not encode again, and vice versa.

A :class:`ClickCase` keeps, per chosen slice, the embedding (bf16 on CPU to halve the
memory) and for every object the label on that slice and on its two neighbours (the
neighbours give the "box from the previous slice's mask" start of propagation).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import torch

from ..errors import SamMedError
from .click_views import zoom_cases_of_scan

__all__ = ["ClickCase", "choose_slices", "load_click_cases", "load_click_sets", "merge_cases", "parse_click_sets",
           "set_cases", "split_ids", "samples_of"]


@dataclass
class ClickCase:
    """One scan's chosen slices (see the module docstring)."""

    source: str
    case_id: str
    hw: tuple[int, int]
    slices: list[int]
    embeddings: dict[int, torch.Tensor] = field(default_factory=dict)  # k -> (256, 64, 64) bf16
    # (k, value) -> (label on k-1, on k, on k+1), bool (H, W); a missing neighbour is all False
    labels: dict[tuple[int, int], tuple[np.ndarray, np.ndarray, np.ndarray]] = field(default_factory=dict)
    names: dict[int, str] = field(default_factory=dict)
    view: str = "whole"  # "whole": the slice at S; "zoom": one object in its engine zoom crop (.click_views)
    crops: dict[int, tuple] = field(default_factory=dict)  # zoom: k -> inclusive crop (plane px) the sample lives in


def split_ids(ids: Sequence[str], n_val: int) -> tuple[list[str], list[str]]:
    """(train, validation) by sorted case id: the last ``n_val`` ids are validation."""
    s = sorted(ids)
    if n_val <= 0:
        return s, []
    if n_val >= len(s):
        raise SamMedError(f"n_val={n_val} leaves no training case out of {len(s)}")
    return s[:-n_val], s[-n_val:]


def choose_slices(present: np.ndarray, n: int) -> list[int]:
    """``n`` slice indices spread evenly through the slices where ``present`` (1D bool) holds
    (all of them when there are fewer)."""
    ks = np.flatnonzero(present)
    if ks.size == 0 or n <= 0:
        return []
    if ks.size <= n:
        return [int(k) for k in ks]
    pos = np.rint(np.linspace(0, ks.size - 1, n + 2)[1:-1]).astype(int)
    return sorted({int(ks[i]) for i in pos})


def load_click_cases(cases, predictor, slices_per_case: int, *, source: str = "", min_area: int = 4,
                     slices_for: dict[str, list[int]] | None = None, value_offset: int = 0,
                     log: Callable[[str], None] | None = None, view: str = "whole", zoom: dict | None = None,
                     chosen: dict[str, list[int]] | None = None) -> list[ClickCase]:
    """:class:`ClickCase` list of evaluation ``cases`` (:class:`~sam_med.evaluation.EvalCase`),
    each slice encoded by ``predictor`` (a bound-per-case ``SliceWisePredictor``; its
    cache decides what is really encoded). Objects with fewer than ``min_area`` pixels on
    a slice are skipped there. ``slices_for``: case id -> the slices to use (e.g. those
    already chosen for another label map of the same scan, so both share every encode);
    ``value_offset`` is added to the object values (two label maps of one scan kept apart).
    ``view``: ``whole`` (one encode per slice), ``zoom`` (one encode per object and slice in
    the engine's zoom crop: :func:`.click_views.zoom_cases_of_scan`, options ``zoom``) or ``both``.
    ``chosen`` (filled): case id -> the slices used."""

    out: list[ClickCase] = []
    t0 = time.perf_counter()
    for i, case in enumerate(cases):
        image, label = case.load()
        predictor.bind(image)
        geo = predictor.geometry(image)
        lab = np.asarray(label.array)
        objs = [(int(v), str(n)) for v, n in case.objects(label)]
        other = tuple(a for a in range(3) if a != geo.axis)
        masks = {v: lab == v for v, _ in objs}
        present = np.zeros(image.shape[geo.axis], dtype=bool)
        for m in masks.values():
            present |= m.sum(axis=other) >= min_area
        ks = list((slices_for or {}).get(case.case_id) or choose_slices(present, slices_per_case))
        if not ks:
            continue
        if chosen is not None:
            chosen[case.case_id] = ks
        if view in ("zoom", "both"):
            out += zoom_cases_of_scan(ClickCase, case, predictor, geo, masks, dict(objs), ks, source=source, min_area=min_area,
                                      value_offset=value_offset, **(zoom or {}))
        if view == "zoom":
            if log and (i + 1) % 10 == 0:
                log(f"[click-data] {source}: {i + 1}/{len(cases)} cases, {sum(len(c.labels) for c in out)} samples, "
                    f"{time.perf_counter() - t0:.0f}s")
            continue
        embs = predictor.embeddings(geo, ks)
        cc = ClickCase(source=source, case_id=case.case_id, hw=tuple(int(v) for v in geo.hw), slices=ks,
                       names={v + value_offset: n for v, n in objs})
        n_k = image.shape[geo.axis]
        for k in ks:
            cc.embeddings[k] = embs[k].detach().to("cpu", torch.bfloat16).reshape(embs[k].shape[-3:])
            for v, m in masks.items():
                cur = np.ascontiguousarray(geo.slice_of(m, k), dtype=bool)
                if cur.sum() < min_area:
                    continue
                nb = [np.ascontiguousarray(geo.slice_of(m, j), dtype=bool) if 0 <= j < n_k
                      else np.zeros_like(cur) for j in (k - 1, k + 1)]
                cc.labels[(k, v + value_offset)] = (nb[0], cur, nb[1])
        out.append(cc)
        if log and (i + 1) % 10 == 0:
            log(f"[click-data] {source}: {i + 1}/{len(cases)} cases, {sum(len(c.labels) for c in out)} samples, "
                f"{time.perf_counter() - t0:.0f}s")
    return out


def samples_of(cases: Sequence[ClickCase]) -> list[tuple[int, int, int]]:
    """Flat ``(case index, slice, object value)`` list of every sample of ``cases``."""
    return [(ci, k, v) for ci, c in enumerate(cases) for (k, v) in sorted(c.labels)]


def merge_cases(a: Sequence[ClickCase], b: Sequence[ClickCase]) -> list[ClickCase]:
    """``a`` with the samples of ``b``'s cases of the same id (and same slices) added."""
    by = {c.case_id: c for c in b if c.view == "whole"}
    out = []
    for c in a:
        if c.view != "whole":
            out.append(c)
            continue
        o = by.get(c.case_id)
        if o is not None:
            for key, v in o.labels.items():
                if key[0] in c.embeddings:
                    c.labels[key] = v
            c.names.update(o.names)
        out.append(c)
    return out + [c for c in b if c.view != "whole"]  # zoom samples have their own encodes


_SET_KEYS = {"name", "train", "val", "dataset", "n_val", "slices_per_case", "val_slices_per_case",
             "share_slices_with", "value_offset", "labels", "min_area", "limit", "repeat", "view", "max_objects",
             "jitter", "extent", "val_max_objects"}


def parse_click_sets(raw) -> list[dict]:
    """Check ``data.click_sets`` (see ``configs/finetune/lite_medsam_clicks_hn_hippo.yaml``): each
    set is ``train`` + ``val`` CSVs (split by file) or one ``dataset`` + ``n_val`` (the last
    ``n_val`` case ids are validation); ``limit``: the first N training cases (by id; validation
    is never cut); ``repeat``: each training sample of the set counts this many times per epoch
    (a small set is not drowned by a large one). ``view``: ``whole`` (default) | ``zoom`` | ``both``
    (:mod:`.click_views`: the engine's zoom crop per object; ``max_objects`` / ``val_max_objects``
    per slice, ``jitter`` of the training crops' extent, ``extent``: ``volume`` | ``slice``)."""
    from .paths import resolve_dataset

    if not isinstance(raw, list) or not raw:
        raise SamMedError("data.click_sets must be a non-empty list of sets")
    out, names = [], set()
    for i, s in enumerate(raw):
        if not isinstance(s, dict) or set(s) - _SET_KEYS:
            raise SamMedError(f"data.click_sets[{i}]: a mapping with keys from {sorted(_SET_KEYS)}, got {s!r}")
        name = str(s.get("name") or f"set{i}")
        if name in names:
            raise SamMedError(f"data.click_sets: duplicate name {name!r}")
        if bool(s.get("dataset")) == bool(s.get("train")):
            raise SamMedError(f"data.click_sets[{i}] ({name}): give 'train' (+ 'val') or 'dataset' (+ 'n_val')")
        if s.get("share_slices_with") and s["share_slices_with"] not in names:
            raise SamMedError(f"data.click_sets[{i}] ({name}): share_slices_with names an earlier set")
        names.add(name)
        if s.get("view", "whole") not in ("whole", "zoom", "both") or s.get("extent", "volume") not in ("volume",
                                                                                                      "slice"):
            raise SamMedError(f"data.click_sets[{i}] ({name}): view is whole | zoom | both, extent volume | slice")
        d = dict(s, name=name)
        for k in ("train", "val", "dataset"):
            if d.get(k):
                d[k] = resolve_dataset(str(d[k]))
        out.append(d)
    return out


def set_cases(s: dict, split: str) -> list:
    """The :class:`~sam_med.evaluation.EvalCase` list of one click set's ``train`` or ``val`` split."""
    from ..evaluation import open_dataset

    if s.get("dataset"):
        ds = open_dataset(s["dataset"], labels=s.get("labels"))
        tr, va = split_ids([c.case_id for c in ds.cases], int(s.get("n_val") or 0))
        keep = set(tr if split == "train" else va)
        cases = [c for c in ds.cases if c.case_id in keep]
    else:
        if split == "val" and not s.get("val"):
            return []
        cases = list(open_dataset(s[split], labels=s.get("labels")).cases)
    cases.sort(key=lambda c: c.case_id)
    return cases[: int(s["limit"])] if s.get("limit") and split == "train" else cases


def load_click_sets(sets: list[dict], split: str, predictor, log: Callable[[str], None] | None = None,
                    slices_key: str | None = None) -> list[ClickCase]:
    """All :class:`ClickCase` of ``split`` ("train" | "val") over the parsed click sets; a set
    with ``share_slices_with`` reuses that set's slices (and samples join its cases)."""
    key = slices_key or ("slices_per_case" if split == "train" else "val_slices_per_case")
    by_name: dict[str, list[ClickCase]] = {}
    chosen_by: dict[str, dict[str, list[int]]] = {}
    for s in sets:
        cases = set_cases(s, split)
        shared = by_name.get(s.get("share_slices_with") or "")
        slices_for = chosen_by.get(s.get("share_slices_with") or "") if shared is not None else None
        if slices_for is not None:  # only the scans (and slices) the shared set encoded
            cases = [c for c in cases if c.case_id in slices_for]
        n = int(s.get(key) or s.get("slices_per_case") or 4)
        mo = s.get("val_max_objects", s.get("max_objects")) if split == "val" else s.get("max_objects")
        zoom = {"max_objects": int(mo or 0), "jitter": bool(s.get("jitter")) and split == "train",
                "extent": str(s.get("extent", "volume"))}
        got = load_click_cases(cases, predictor, n, source=s["name"], min_area=int(s.get("min_area", 4)),
                               slices_for=slices_for, value_offset=int(s.get("value_offset", 0)), log=log,
                               view=str(s.get("view", "whole")), zoom=zoom, chosen=chosen_by.setdefault(s["name"], {}))
        if shared is not None:
            by_name[s["share_slices_with"]] = merge_cases(shared, got)
        else:
            by_name[s["name"]] = got
        if log:
            log(f"[click-data] {s['name']} {split}: {len(got)} cases, {sum(len(c.labels) for c in got)} samples")
    return [c for v in by_name.values() for c in v]

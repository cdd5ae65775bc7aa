"""The challenge's 6-step loop for one case: step 1 the boxes (skipped, scored 0, when the
case has none), steps 2-6 one simulated click per class (all classes together), each step
scored with :mod:`.metrics`. Two ways to run the model on a step:

- :class:`InProcessStepper` (default): one :class:`~sam_med.session.Session` per case, the
  predictor and its embedding cache kept; a click is ``Session.add_point`` (incremental, as a
  napari user works).
- :class:`FreshProcessStepper`: every step writes the accumulated challenge file (``imgs,
  spacing, boxes, clicks, clicks_order, prev_pred``) and runs ``sam-med segment`` on it as a
  new process, like the official docker loop; its timings are what the challenge measures.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ...errors import SamMedError
from .clicks import Click, next_click
from .metrics import auc, step_metrics

N_CLICKS = 5
BUDGET_S_PER_CLASS = 90.0


def _point(click: Click):
    from ...prompts import Point

    z, y, x = click.zyx
    return Point((float(x), float(y), float(z)), click.kind == "fg")


class InProcessStepper:
    """Runs each step on one Session (predictor built once per process)."""

    def __init__(self, case, predictor):
        from ...session import Session

        self.case = case
        self.session = Session(case.volume, predictor)

    def boxes(self, boxes: list) -> np.ndarray:
        from ...io.challenge import parse_box
        from ...prompts import ObjectPrompts

        for c, b in enumerate(boxes, 1):
            if b is None:
                continue
            kb = parse_box(b, self.case.gts.shape, c, self.case.case_id)
            self.session.add_object(f"class {c}", id=c)
            self.session.set_prompts(c, ObjectPrompts(key_box=kb))
        return self.segs()

    def clicks(self, new: dict[int, Click | None], clicks, order) -> np.ndarray:
        for c, click in new.items():
            if click is None:
                continue
            if c not in self.session.objects:
                self.session.add_object(f"class {c}", id=c)
            self.session.add_point(c, _point(click))
        return self.segs()

    def segs(self) -> np.ndarray:
        return np.ascontiguousarray(self.session.label_map(dtype=np.uint8).transpose(2, 1, 0))

    def close(self) -> None:
        pass


class FreshProcessStepper:
    """Runs each step as ``CMD segment INPUT.npz --out OUTPUT.npz`` in a new process."""

    def __init__(self, case, workdir, command: list[str] | None = None, extra_args: list[str] | None = None):
        self.case = case
        self.dir = Path(workdir)
        (self.dir / "inputs").mkdir(parents=True, exist_ok=True)
        (self.dir / "outputs").mkdir(parents=True, exist_ok=True)
        self.inp = self.dir / "inputs" / f"{case.case_id}.npz"
        self.out = self.dir / "outputs" / f"{case.case_id}.npz"
        for f in (self.inp, self.out):
            if f.exists():
                f.unlink()
        self.command = command or [sys.executable, "-m", "sam_med"]
        self.extra = list(extra_args or [])
        self.prev: np.ndarray | None = None
        self.box_list: list | None = None

    def _write(self, **keys) -> None:
        arrays = {"imgs": self.case.imgs, "spacing": np.asarray(self.case.spacing_zyx, float)}
        if self.box_list is not None:
            arrays["boxes"] = self.box_list
        arrays.update(keys)
        np.savez_compressed(self.inp, **arrays)

    def _run(self) -> np.ndarray:
        if self.out.exists():
            self.out.unlink()
        cmd = [*self.command, "segment", str(self.inp), "--out", str(self.out), "--no-progress", *self.extra]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0 or not self.out.exists():
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
            raise SamMedError(f"sam-med segment failed (exit {proc.returncode}): {tail[0]}")
        from ...io.challenge import read_npz_members

        segs = np.asarray(read_npz_members(str(self.out))["segs"]).astype(np.uint8)
        if segs.shape != self.case.gts.shape:
            raise SamMedError(f"segs shape {segs.shape} differs from the image {self.case.gts.shape}")
        self.prev = segs
        return segs

    def boxes(self, boxes: list) -> np.ndarray:
        self.box_list = list(boxes)
        self._write()
        return self._run()

    def clicks(self, new, clicks, order) -> np.ndarray:
        prev = self.prev if self.prev is not None else np.zeros(self.case.gts.shape, np.uint8)
        self._write(clicks=clicks, clicks_order=order, prev_pred=prev)
        return self._run()

    def close(self) -> None:
        for f in (self.inp, self.out):
            if f.exists():
                f.unlink()


@dataclass
class CaseResult:
    """One case's row (official column names) + per-class values + the clicks placed."""

    row: dict
    per_class: list[dict] = field(default_factory=list)
    clicks: list[dict] = field(default_factory=list)  # per click step: {class: [z, y, x, kind] | None}


def run_case(case, stepper, nsd_tolerance: float = 2.0, on_step=None, n_clicks: int = N_CLICKS) -> CaseResult:
    """The 6 steps on ``case`` (a :class:`~.cases.LoadedCase`) through ``stepper``; ``n_clicks``
    below the challenge's 5 runs fewer click steps (a quicker, non-official comparison)."""
    classes = case.classes
    if classes != list(range(1, len(classes) + 1)):
        raise SamMedError(f"{case.case_id}: classes must be 1..N, got {classes}")
    gts = case.gts
    clicks = [{"fg": [], "bg": []} for _ in classes]
    order: list[list] = [[] for _ in classes]
    row: dict = {"CaseName": case.case_id}
    dscs, nsds, per_step, placed = [], [], [], []
    segs = np.zeros(gts.shape, np.uint8)
    total = 0.0
    for it in range(int(n_clicks) + 1):
        k = it + 1
        if it == 0:
            if not case.boxes:
                row.update({"RunningTime_1": 0.0, "DSC_1": 0.0, "NSD_1": 0.0})
                dscs.append(0.0), nsds.append(0.0), per_step.append(None)
                continue
            t0 = time.perf_counter()
            segs = stepper.boxes(case.boxes)
        else:
            new = {}
            for i, c in enumerate(classes):
                click = next_click(segs == c, gts == c)
                new[c] = click
                if click is None:
                    order[i].append(None)
                else:
                    clicks[i][click.kind].append(list(click.zyx))
                    order[i].append(click.kind)
            placed.append({c: (None if v is None else [*v.zyx, v.kind]) for c, v in new.items()})
            t0 = time.perf_counter()
            segs = stepper.clicks(new, clicks, order)
        dt = time.perf_counter() - t0
        total += dt
        m = step_metrics(gts, segs, case.spacing_zyx, nsd_tolerance)
        row[f"RunningTime_{k}"], row[f"DSC_{k}"], row[f"NSD_{k}"] = dt, m["dsc"], m["nsd"]
        dscs.append(m["dsc"]), nsds.append(m["nsd"]), per_step.append(m["per_class"])
        if on_step is not None:
            on_step(k, m)
    row["TotalRunningTime"] = total
    row.update({"DSC_AUC": auc(dscs), "NSD_AUC": auc(nsds), "DSC_Final": dscs[-1], "NSD_Final": nsds[-1],
                "num_class": len(classes), "runtime_upperbound": BUDGET_S_PER_CLASS * len(classes)})
    row["over_budget"] = total > row["runtime_upperbound"]
    per_class = []
    for c in classes:
        pc = {"CaseName": case.case_id, "class": c, "name": case.class_names.get(c, f"class {c}")}
        for k, ps in enumerate(per_step, 1):
            pc[f"DSC_{k}"] = 0.0 if ps is None else ps[c]["dsc"]
            pc[f"NSD_{k}"] = 0.0 if ps is None else ps[c]["nsd"]
        per_class.append(pc)
    return CaseResult(row, per_class, placed)


def make_stepper(case, mode: str, predictor=None, workdir=None, command=None, extra_args=None):
    if mode == "in-process":
        return InProcessStepper(case, predictor)
    if mode == "fresh-process":
        return FreshProcessStepper(case, workdir or os.getcwd(), command, extra_args)
    raise SamMedError(f"unknown step mode {mode!r}")

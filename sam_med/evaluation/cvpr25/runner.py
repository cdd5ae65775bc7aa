"""Run the cvpr25 protocol over a dataset: progress bar, one JSON line per finished case in
``OUT/cases.rank<R>.jsonl`` (``resume=True`` skips cases already there; the settings must
match ``OUT/config.json``), a failed case recorded with its reason and the run continued,
cases sharded round-robin over ``torchrun`` ranks with rank 0 writing the reports."""

from __future__ import annotations

import json
import os
import tempfile
import traceback
from pathlib import Path

from ...errors import SamMedError
from ..distributed import DistContext
from .cases import open_cases
from .protocol import make_stepper, run_case
from .report import write_reports

GLOB = "cases.rank*.jsonl"


def _finished(out: Path) -> dict[str, dict]:
    done = {}
    for f in sorted(out.glob(GLOB)):
        for line in f.read_text().splitlines():
            try:
                item = json.loads(line)
            except ValueError:
                continue  # a torn last line: that case runs again
            done[item["row"]["CaseName"]] = item
    return done


def _prepare_out(out: Path, config: dict, resume: bool) -> None:
    out.mkdir(parents=True, exist_ok=True)
    cfg = out / "config.json"
    if resume and cfg.is_file():
        old = json.loads(cfg.read_text())
        if old != config:
            diff = {k: (old.get(k), v) for k, v in config.items() if old.get(k) != v}
            raise SamMedError(f"{out}: --resume with different settings than the earlier run ({diff})")
    if not resume:
        for f in out.glob(GLOB):
            f.unlink()
    cfg.write_text(json.dumps(config, indent=1))


def run_cvpr25(data, out_dir, *, predictor_factory, mode: str = "in-process", gts_dir=None,
               segment_command: list[str] | None = None, segment_args: list[str] | None = None,
               config: dict | None = None, resume: bool = False, progress: bool = True,
               limit: int | None = None, dist: DistContext | None = None,
               spacing_order: str = "zyx") -> dict | None:
    """Evaluate every case; returns the summary on rank 0 (None elsewhere)."""
    from tqdm.auto import tqdm

    dist = dist or DistContext()
    out = Path(out_dir)
    name, cases = open_cases(data, gts_dir, limit, spacing_order)
    config = dict(config or {}, mode=mode, data=str(Path(data).resolve()))
    err = None
    if dist.is_main:
        try:
            _prepare_out(out, config, resume)
        except (SamMedError, OSError) as exc:
            err = str(exc)
    err = dist.broadcast(err)
    if err:
        raise SamMedError(err)
    done = _finished(out) if resume else {}
    mine = [c for c in dist.shard(cases) if c.case_id not in done]
    predictor = predictor_factory() if (mine and mode == "in-process") else None
    rec = out / f"cases.rank{dist.rank}.jsonl"
    results = {c.case_id: done[c.case_id] for c in dist.shard(cases) if c.case_id in done}
    bar = tqdm(mine, desc="evaluate (cvpr25)", unit="case", disable=not progress or not dist.is_main,
               dynamic_ncols=True)
    for c in bar:
        bar.set_postfix_str(c.case_id[:40])
        with tempfile.TemporaryDirectory(prefix="sam_med_cvpr25_") as tmp:
            try:
                case = c.load()
                stepper = make_stepper(case, mode, predictor, tmp, segment_command, segment_args)
                try:
                    res = run_case(case, stepper, on_step=lambda k, m: bar.set_postfix_str(
                        f"{c.case_id[:30]} step {k} DSC {m['dsc']:.3f}"))
                finally:
                    stepper.close()
                item = {"row": dict(res.row, status="ok"), "per_class": res.per_class, "clicks": res.clicks}
            except Exception as exc:  # noqa: BLE001 - a failed case is recorded, the run goes on
                msg = str(exc) if isinstance(exc, SamMedError) else f"{type(exc).__name__}: {exc}"
                if not isinstance(exc, SamMedError) and os.environ.get("SAM_MED_DEBUG"):
                    traceback.print_exc()
                item = {"row": {"CaseName": c.case_id, "status": "failed", "error": msg}}
        results[c.case_id] = item
        with open(rec, "a") as fh:
            fh.write(json.dumps(item, default=_json) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
    bar.close()
    gathered = dist.gather(results)
    if not dist.is_main:
        return None
    merged = {}
    for part in gathered:
        merged.update(part)
    ordered = [merged[c.case_id] for c in cases if c.case_id in merged]
    return write_reports(ordered, out, name, config)


def _json(o):
    import numpy as np

    if isinstance(o, (np.integer, np.bool_)):
        return o.item()
    if isinstance(o, np.floating):
        return float(o)
    return str(o)

"""`sam-med info PATH`: what a scan is, as sam-med reads it (shape, spacing, orientation, ...)."""

from __future__ import annotations

import json


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "info", help="describe a scan (NIfTI, NRRD, MHA, npz, DICOM folder/file)",
        description="Print shape, spacing, orientation codes, modality, intensity and the DICOM series chosen.",
    )
    p.add_argument("path", nargs="+", help="image file, DICOM folder, or several DICOM files")
    p.add_argument("--json", action="store_true", help="print a machine-readable JSON object")
    p.add_argument("--series", metavar="UID", default=None, help="DICOM SeriesInstanceUID to read")
    p.add_argument("--time-index", metavar="N", type=int, default=None,
                   help="volume to read from a 4D series / 4D NIfTI (0-based)")
    p.add_argument("--resample", action="store_true",
                   help="resample DICOM series with uneven gaps or gantry tilt onto a regular grid")
    p.set_defaults(func=run)


def _finite(obj):
    """``obj`` with NaN / inf floats replaced by None (JSON has no NaN)."""
    import math

    import numpy as np

    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _finite(obj.tolist())
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def run(args) -> int:
    from ..io import load

    path = args.path[0] if len(args.path) == 1 else list(args.path)
    vol = load(path, series_uid=args.series, time_index=args.time_index, resample=args.resample)
    summary = vol.summary()
    summary.pop("source_files", None)
    if args.json:
        print(json.dumps(_finite(summary), indent=2, default=str, allow_nan=False))
        return 0
    sp = " x ".join(f"{s:g}" for s in summary["spacing"])
    lines = [
        f"source:      {summary['source']}",
        f"shape:       {' x '.join(str(s) for s in summary['shape'])} (i, j, k)",
        f"spacing:     {sp} mm",
        f"orientation: {summary['orientation']} (RAS+ world)",
        f"origin:      {', '.join(f'{o:g}' for o in summary['origin'])} mm",
        f"modality:    {summary['modality'] or 'unknown'}",
        f"intensity:   {summary['intensity']} ({summary['dtype']}, {summary['min']:g} .. {summary['max']:g})",
        f"slice axis:  {summary['slice_axis']}",
    ]
    if vol.dicom is not None:
        lines.append(f"series:      {vol.meta.get('series_instance_uid')} "
                     f"{vol.dicom.series_description or ''}".rstrip())
    for key in ("time_index", "resampled", "series_note", "reoriented_from", "geometry_note", "modality_from"):
        if key in vol.meta:
            lines.append(f"{key.replace('_', ' ') + ':':<13}{vol.meta[key]}")
    from . import printable

    print("\n".join(printable(ln) for ln in lines))  # file-given text (descriptions) never reaches the terminal raw
    return 0

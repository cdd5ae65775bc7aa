"""`sam-med segment`: 3D box / point prompts → label map on the image's geometry."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from ..errors import OutputError, PromptError, SamMedError
from .common import guard_outputs, progress_bar, view_options

OUT_FORMATS = {".nii": "nifti", ".nii.gz": "nifti", ".nrrd": "nrrd", ".mha": "nrrd",
               ".npz": "npz", ".dcm": "dicom-seg"}


def register(sub) -> None:
    p = sub.add_parser(
        "segment",
        help="segment objects from 3D box / point prompts",
        description=(
            "Segment one or more objects from 3D prompts and write a label map on the image's "
            "geometry. Voxel coordinates are (x, y, z) = (i, j, k), the index order of the stored "
            "image (ITK/nibabel order); world coordinates are RAS mm. Box bounds are inclusive."
        ),
    )
    p.add_argument("image", help="DICOM folder/file, NIfTI, NRRD/MHA or research npz")
    p.add_argument("--box", nargs=6, type=float, metavar=("X0", "Y0", "Z0", "X1", "Y1", "Z1"))
    p.add_argument("--key-box", nargs=7, type=float, metavar=("K", "K0", "K1", "U0", "V0", "U1", "V1"),
                   help="a key-slice box: the rectangle (U0 V0 U1 V1, the two other voxel axes in "
                        "order) on slice K of --key-axis, and the slice range K0..K1 (voxel, inclusive); "
                        "the rectangle bounds slice K only")
    p.add_argument("--key-axis", type=int, default=2, choices=(0, 1, 2), help="axis of --key-box (default 2)")
    p.add_argument("--point", nargs=3, type=float, action="append", metavar=("X", "Y", "Z"),
                   help="a click; repeat for several (labels from --label, default 1)")
    p.add_argument("--label", type=int, action="append", choices=(0, 1),
                   help="label of each --point in order: 1 foreground, 0 background")
    p.add_argument("--coords", choices=("voxel", "world"), default="voxel")
    p.add_argument("--prompts", help="JSON file with several objects (see sam_med/prompts.py)")
    p.add_argument("--model", default="lite_medsam", help="registered model name (default lite_medsam)")
    p.add_argument("--checkpoint", help="checkpoint file for the model (overrides the config's source)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda[:N]")
    p.add_argument("--precision", choices=("auto", "fp32", "bf16", "fp16"),
                   help="encoder precision (default auto: bf16 where the CPU/GPU runs it natively)")
    p.add_argument("--modality", choices=("CT", "MR", "auto"), default="auto",
                   help="intensity pipeline: auto = DICOM tag, else intensity range")
    p.add_argument("--window", nargs=2, type=float, metavar=("LEVEL", "WIDTH"), help="CT window")
    p.add_argument("--axis", type=int, choices=(0, 1, 2), help="slicing axis (default: acquisition axis)")
    p.add_argument("--series", dest="series_uid", help="DICOM SeriesInstanceUID when a folder has several")
    p.add_argument("--time-index", type=int, help="time point of a 4D series")
    p.add_argument("--resample", action="store_true", help="resample tilted/uneven DICOM onto a regular grid")
    p.add_argument("--overlap", choices=("last", "first"), default="last",
                   help="overlap rule between objects (default: later objects win)")
    p.add_argument("--cache-dir", help="on-disk embedding cache (reopening a scan skips the encoder)")
    p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                   help="engine option, YAML-typed, repeatable; the slice-wise engine's are listed below")
    p.add_argument("--format", choices=("nifti", "nrrd", "npz", "dicom-seg"),
                   help="output format (default: from --out's extension)")
    p.add_argument("--session-out", help="also save the session (prompts + masks + model) to this .npz")
    p.add_argument("--accept-to", metavar="DIR",
                   help="also store the result (masks, prompts, scan reference + checksum) as an entry of "
                        "this accepted-results folder (made when new; see docs/dataengine.md)")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--spacing-order", choices=("zyx", "xyz"), default="zyx",
                   help="CVPR 2025 challenge npz only: order of its 'spacing' (default zyx, the challenge's)")
    p.add_argument("--out", required=True, help="output label map (.nii.gz, .nrrd, .npz, .dcm)")
    p.epilog = options_help()
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.set_defaults(func=run)


def options_help() -> str:
    """The slice-wise engine's ``--option`` keys with their defaults and notes (for ``--help``)."""
    import textwrap

    from ..predictors.slicewise.options import option_docs

    lines = ["slice-wise engine options (--option KEY=VALUE; docs/engine.md):"]
    for name, default, note in option_docs():
        lines.append(f"  {name} (default {default})")
        lines.extend(textwrap.wrap(note, 88, initial_indent="      ", subsequent_indent="      "))
    return "\n".join(lines)


def out_format(path: str, fmt: str | None) -> str:
    """Output format from ``--format`` and ``--out``'s extension, which must agree."""
    name = path.lower()
    by_name = next((OUT_FORMATS[e] for e in sorted(OUT_FORMATS, key=len, reverse=True) if name.endswith(e)), None)
    if fmt:
        if by_name is not None and by_name != fmt or by_name is None and fmt != "dicom-seg":
            raise OutputError(f"{path}: --format {fmt} contradicts the output name; name it "
                              + {"nifti": ".nii.gz", "nrrd": ".nrrd or .mha", "npz": ".npz",
                                 "dicom-seg": ".dcm"}[fmt])
        return fmt
    if by_name is None:
        raise OutputError(f"{path}: unknown output format; use .nii.gz, .nrrd, .npz or .dcm, or --format")
    return by_name


def objects_from_args(args, volume) -> list[dict]:
    """Validated objects: [{"id", "name", "prompts": ObjectPrompts}] from --prompts or --box/--point."""
    from ..prompts import ObjectPrompts, check_coords

    objs: list[dict] = []
    if args.prompts:
        from ..io.validate import read_prompts_file

        spec = read_prompts_file(args.prompts)  # size, UTF-8, nesting, types, ids: all before any object
        coords = check_coords(spec.get("coords", args.coords))
        for n, o in enumerate(spec["objects"], 1):
            oid = o.get("id", n)
            try:
                prompts = ObjectPrompts.from_json(o, volume, coords)
            except PromptError as exc:
                raise PromptError(f"{args.prompts}: object {oid}: {exc}") from None
            objs.append({"id": oid, "name": o.get("name", f"object {oid}"), "prompts": prompts})
        if args.box or args.point or args.key_box:
            raise PromptError("give either --prompts or --box/--key-box/--point, not both")
    else:
        points = args.point or []
        labels = args.label or []
        if labels and len(labels) != len(points):
            raise PromptError(f"{len(points)} --point but {len(labels)} --label; give one label per point")
        labels = labels or [1] * len(points)
        spec_obj = {"id": 1}
        if args.box and args.key_box:
            raise PromptError("give either --box (a tight 3D box) or --key-box, not both")
        if args.box:
            spec_obj["box"] = args.box
        if args.key_box:
            if args.coords != "voxel":
                raise PromptError("--key-box is given in voxel coordinates only")
            k, k0, k1, *rect = args.key_box
            spec_obj["key_slice_box"] = {"axis": args.key_axis, "slice": k, "range": [k0, k1], "rect": rect}
        if points:
            spec_obj["points"] = [[*p, lab] for p, lab in zip(points, labels)]
        if not {"box", "key_slice_box", "points"} & set(spec_obj):
            raise PromptError("no prompts: give --box, --key-box, --point or --prompts")
        objs.append({"id": 1, "name": "object 1", "prompts": ObjectPrompts.from_json(spec_obj, volume, args.coords)})
    if not objs:
        raise PromptError("the prompt set is empty")
    return objs


def check_output(out: str, volume, args=None) -> dict[str, str]:
    """Every output (labels, sidecar, session, cache and accept folders) against every input
    the run reads or may read (scan, prompts, model config, checkpoint, cache entries)."""
    from ..io.sidecar import sidecar_path

    a = args if args is not None else argparse.Namespace()
    outs = {"--out": out, "--out's sidecar": sidecar_path(str(Path(out).expanduser().absolute())),
            "--session-out": getattr(a, "session_out", None)}
    return guard_outputs(outs, {"--cache-dir": getattr(a, "cache_dir", None), "--accept-to": getattr(a, "accept_to", None)},
                         volume=volume, extra=[getattr(a, "prompts", None)], model=getattr(a, "model", None),
                         checkpoint=getattr(a, "checkpoint", None), cache_dir=getattr(a, "cache_dir", None))


def run(args: argparse.Namespace) -> int:
    from .segment_challenge import is_challenge_input, run_challenge

    if is_challenge_input(args.image):  # CVPR 2025 challenge npz: its own prompts and output
        if getattr(args, "accept_to", None):
            raise OutputError(f"--accept-to: {args.image} is a CVPR 2025 challenge file (its prompts are "
                              "the challenge's, not a user's); accept results of NIfTI/DICOM/NRRD scans")
        return run_challenge(args)
    from .. import io
    from ..predictors.factory import build_predictor
    from ..session import Session

    fmt = out_format(args.out, args.format)
    volume = io.load(args.image, series_uid=args.series_uid, time_index=args.time_index,
                     resample=args.resample)
    if fmt == "dicom-seg":
        if volume.dicom is None:
            raise OutputError(f"{args.out}: DICOM SEG output needs a DICOM input; {args.image} is not DICOM")
        from ..io.dicom_seg import check_dicom_seg_source

        check_dicom_seg_source(volume)
    written_paths = check_output(args.out, volume, args)  # before the model loads; folders are made at commit
    if args.accept_to:
        from ..dataengine import check_folder

        check_folder(args.accept_to, outputs=written_paths.values())
    objs = objects_from_args(args, volume)  # validate every prompt before loading the model

    from ..predictors.base import parse_option_pairs

    options = parse_option_pairs(args.option, what="--option")
    options.update(view_options(args, args.cache_dir))
    if args.precision:  # read by sam_med.models.load_model (sam_med.models.precision)
        os.environ["SAM_MED_PRECISION"] = args.precision
    predictor = build_predictor(args.model, args.device, checkpoint=args.checkpoint, **options)
    session = Session(volume, predictor, overlap=args.overlap)
    progress = progress_bar(args.no_progress)
    for o in objs:
        session.add_object(o["name"], id=o["id"])
        session.set_prompts(o["id"], o["prompts"], progress=progress)
        m = session.mask(o["id"])
        print(f"object {o['id']} ({o['name']}): {int(m.sum())} voxels, "
              f"{float(m.sum() * volume.spacing.prod() / 1000):.2f} ml", file=sys.stderr)
    written = write_outputs(session, args.out, fmt, args.session_out)
    print(written)
    if args.accept_to:  # after the outputs: the entry records the prompts given and the masks written
        from ..dataengine import accept_session

        entry = accept_session(session, args.accept_to)
        for o in session.objects.values():
            if o.mask is None or not o.mask.any():
                print(f"object {o.id} ({o.name}): empty mask, not accepted", file=sys.stderr)
        print(f"accepted as {entry.dir}", file=sys.stderr)
    return 0


def write_outputs(session, out: str, fmt: str, session_out: str | None = None, extra: dict | None = None) -> str:
    """Labels, session (optional) and sidecar of one run, committed together: all are
    staged first, then renamed in that order (sidecar last); nothing is left on error."""
    from ..io import sidecar
    from ..io.atomic import OutputSet
    from ..models.precision import predictor_precision
    from ..predictors.slicewise.model_clicks import click_decoder_record

    predictor = session.predictor
    with OutputSet() as outputs:
        written = write_labels(session.label_map(), out, fmt, session.volume, session)
        if session_out:
            session.save(session_out)
        sidecar.write_sidecar(
            written, volume=session.volume, prompts_json=session.to_json(),
            model_name=getattr(predictor, "model_name", None),
            checkpoint_sha256=getattr(predictor, "checkpoint_sha256", None), extra=extra,
            precision=predictor_precision(predictor), click_decoder=click_decoder_record(predictor),
        )
        outputs.commit()
    return written


def write_labels(labels, out: str, fmt: str, volume, session) -> str:
    from .. import io

    if fmt in ("nifti", "nrrd"):
        return io.save_label(labels, out, like=volume)
    if fmt == "npz":
        return io.save_npz_segs(labels, out, like=volume)
    if fmt == "dicom-seg":
        from ..io.dicom_seg import write_dicom_seg
        from .. import __version__

        segs = [{"id": o.id, "name": o.name, "color": o.color} for o in session.objects.values()
                if o.mask is not None and o.mask.any()]
        return write_dicom_seg(labels, volume, out, segs, algorithm={
            "name": getattr(session.predictor, "model_name", None) or "manual", "version": __version__,
            "checkpoint_sha256": getattr(session.predictor, "checkpoint_sha256", None)})
    raise SamMedError(f"unknown output format {fmt!r}")

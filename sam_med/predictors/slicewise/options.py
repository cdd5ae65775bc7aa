"""The slice-wise predictor's options (typed: see :func:`sam_med.predictors.base.build_options`).

Every number here was measured; the comments say where (``benchmarks/``)."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["SliceWiseOptions", "resolve_workers"]


def _choice(default: str, *choices: str):
    return field(default=default, metadata={"choices": choices})


@dataclass
class SliceWiseOptions:
    """Options of :class:`~sam_med.predictors.slicewise.SliceWisePredictor`."""

    axis: int | None = None  # slicing axis (None: the scan's acquisition axis, Volume.slice_axis)
    zoom: str = _choice("auto", "auto", "always", "never")
    zoom_margin: float = 0.1  # auto: zoom when its key-slice predicted IoU beats the whole slice's by this
    zoom_factor: float = 2.2
    # encoder input size of the zoomed crop: its side x zoom_upsample, rounded up to 16 px,
    # at most the model's S (inf: always S, i.e. upsample small crops to S)
    zoom_upsample: float = float("inf")
    # the alternative to the zoom: None = the whole slice at S; f = a square crop of f x the
    # box side at the whole slice's scale (same pixels per mm, a smaller encoder input: the
    # encoder's cost grows with the input area). Measured on the CT lesions: 4..8 all within
    # noise of the whole slice or better (benchmarks/ablate_slicewise.py), 5 costs ~1/4.
    context: float | None = 5.0
    min_crop: int = 64  # plane pixels
    margin: int = 3
    mask_prompt: bool = False  # measured: +0.01 Dice on CT lesions, -0.08 on abdominal organs
    iou_stop: float = 0.0
    refine_stop_dice: float = 0.98
    # refinement: a re-propagated slice gets its own previous low-res logits as the dense
    # prompt (SAM's iterative rule), so a click's effect fades instead of leaking downstream.
    # Measured (5 clicks, CT lesions, context 5): mean Dice per click 0.864 0.869 0.873 0.877
    # 0.881 0.885, non-decreasing; without: 0.864 0.877 0.883 0.881 (dip) 0.885 0.889.
    # Cropped views only: on whole-slice views (large organs) LiteMedSAM leaks with a dense
    # prompt (liver, one negative click: false positives 3851 -> 11927 voxels with it,
    # -> 3785 without), as the neighbour-logit prompt costs organs 0.08 Dice.
    refine_own_logits: bool = True
    # a click on a slice that has a mask: "edit" = the smallest disk edit of that mask that
    # honours the click (no decoder call; the model re-propagates the neighbours), "model" =
    # decode candidates (box reshaped by the clicks, box + clicks as points, multimask, and
    # the edit) and keep the one that honours most clicks with the least change. With the
    # box-trained LiteMedSAM the edit won 20 of 20 clicks of the CT-lesion click protocol
    # under "model", so "edit" gives the same masks without four decoder calls.
    click_mode: str = _choice("edit", "edit", "model")
    # a refinement click: "edit" = the disk edit on the clicked slice only (a slice the object
    # has not reached is seeded there by the model); "carry" = the model's correction of the
    # clicked slice, only the change containing the click, carried to the neighbouring slices
    # while it overlaps and fades (slicewise/corrections.py); "repropagate" = the disk edit +
    # re-propagation of the slices downstream with their own logits (the earlier rule);
    # "auto" = repropagate on cropped views, edit on whole slices. Measured under the CVPR25
    # protocol with key-slice boxes (mean DSC box step -> 5th click): TotalSeg CT 0.823 ->
    # edit 0.830 / carry 0.818 / repropagate 0.818; TotalSeg MR 0.610 -> edit 0.639 / carry
    # 0.636; CT lesions 0.838 -> edit 0.847 / repropagate 0.849 (but two lesions drop below
    # their box step). edit has the fewest and smallest drops (README).
    # "extend" = edit, but a positive click on a slice with no mask seeds it and propagates
    # into the slices the object has not reached (never changing a slice with a mask;
    # slicewise/extend.py, benchmarks/clicks_extend.md)
    # "ball" (default) = edit, with the disk continued through the neighbouring slices as a ball
    # while the click's pixel is still wrong there, kept to the clicked tissue by ball_guard
    # (slicewise/ball.py, ball_guard.py). CVPR25 six cases (benchmarks/clicks_ball.md), edit ->
    # ball with the defaults below: final 0.8076 -> 0.8297, DSC_AUC 3.218 -> 3.294, no class ends
    # > 0.02 below its box step (edit: CT stomach -0.026); the unguarded ball (ball_guard=none,
    # ball_radius=plane): 0.8256 / 3.273 but CT stomach 0.748 and MR class 7 0.761 (box 0.884 / 0.814)
    click_rule: str = _choice("ball", "edit", "auto", "carry", "repropagate", "extend", "ball")
    # click_rule="ball": which part of each slice's disk is painted / cut (slicewise/ball_guard.py):
    # "none" the raw disk, "connected" the part connected to the click, "intensity" that part
    # within ball_guard_sd robust SDs of the click's patch intensity (the ball stops where the
    # click's pixel is not like it), "intensity_cap" + the radius capped by that region's extent.
    # Measured (ball_radius=plane): connected = none exactly; intensity fixes the CT stomach
    # (0.748 -> 0.909, final 0.8256 -> 0.8303); intensity_cap loses (0.8201)
    ball_guard: str = _choice("intensity", "none", "connected", "intensity", "intensity_cap")
    ball_guard_sd: float = 3.0  # the usual 3 sigma; not tuned
    # click_rule="ball": the ball's radius, "plane" = from the click to the mask's edge on its
    # slice, "volume" = to the 3D mask's edge over the neighbouring slices (slicewise/ball.py),
    # "volume_negative" = volume for negative clicks, plane for positive ones. Measured (guard
    # intensity): plane leaves MR class 7 at 0.761 (a negative ball cut through the object's
    # slices); volume fixes it but costs the positive balls (final 0.8224); volume_negative both
    ball_radius: str = _choice("volume_negative", "plane", "volume", "volume_negative")
    # click_rule="ball": "voxel" = a ball in voxel units (one slice step = one pixel), "mm" = in
    # millimetres from the volume's spacing (slicewise/ball.py). Measured (benchmarks/
    # clicks_seedpart.md): only the lesions are anisotropic (5 mm slices, 0.31-0.98 mm pixels;
    # TotalSeg 3 mm iso: unchanged); their mean final 0.8522 -> 0.8489, three of four lower
    ball_units: str = _choice("voxel", "voxel", "mm")
    # click_rule="ball": a positive click in a separate missed part (missed_part_test): "ball" =
    # the guarded ball; "seed" = the slice seeded by the box search with the click, the part
    # propagated both ways until it meets the mask or fades (slicewise/seed_part.py);
    # "seed_ball" = the seeded part united with the guarded ball. CVPR25 six cases
    # (benchmarks/clicks_seedpart.md), ball -> seed_ball + either: final 0.8297 -> 0.8300, DSC_AUC
    # 3.2939 -> 3.2953 (MR classes 1, 4, 8; CT and lesions unchanged); seed alone: 0.8302 but
    # DSC_AUC 3.2884 (MR class 8's seed at click 2 0.089 vs the ball's 0.180). Cost: a seeded
    # click decodes (and may encode) slices: 7 of 100 clicks over 1 s (max 5.1 s), median 0.003 s.
    # A +0.0003 gain does not pay for 5 s clicks: "ball" stays the default, seed_ball is opt-in
    missed_part: str = _choice("ball", "ball", "seed", "seed_ball")
    # missed_part: which clicks are in a separate part: "tissue" = the click's like-intensity
    # region inside the ball's disk (+2 px) does not touch the mask; "either" (default) = that,
    # or the click is farther from the mask than the mask's half-thickness on the slice
    # (seed_part.py). Measured with seed_ball: tissue 0.8299 / 3.2947, either 0.8300 / 3.2953
    missed_part_test: str = _choice("either", "tissue", "either")
    # a click on a slice with a mask under click_rule="edit": decoded (box + the slice's clicks
    # as points) by this model's decoder on the same embeddings, kept when it honours the
    # click, else the disk edit (slicewise/refine.py); None: the disk edit
    refine_model: str | None = None
    refine_carry: int = 0  # refine_model: carry the click to up to this many slices each side
    refine_mask_prompt: bool = False  # refine_model: + the slice's mask as the dense prompt
    carry_growth: float = 1.5  # carry: stop where the change grows past this x the previous slice's
    carry_max_change: float = 0.5  # carry: a model change over this x the slice's mask area is refused
    batch_size: int | None = None  # None: encode_workers on CPU (batching measured no faster), 8 on CUDA
    # CPU: encode this many slices at once, one per worker thread running one intra-op thread
    # (None: 2 when torch has >= 2 threads). At small inputs one slice does not keep two
    # cores busy, and independent single-threaded workers do not stall each other under load.
    encode_workers: int | None = None
    # points only: "scan" = search, on the clicked slice, the box the model rates best for
    # the object under the clicks (LiteMedSAM is box-trained); "sam" = SAM's point decode
    # for the first extent. Measured, one centre click per object (sam-med evaluate
    # --protocol point): CT lesions mean Dice 0.062 -> 0.772 (0.812 with the intensity stop
    # below), TotalSeg CT organs + brain tumour 0.464 -> 0.806
    point_seed: str = _choice("scan", "scan", "sam")
    # points only: stop propagating where the mask's mean intensity departs from the seed
    # slice's by more than this x the seed's sd (and >= 30 on the 0-255 scale); None: off
    point_intensity_stop: float | None = 4.0
    # speed (issue #16; benchmarks/bench_fullsize.py). whole_res: encoder input size of
    # whole-slice views of box prompts (large objects: the context crop would not fit),
    # None = the model's S; the encoder's cost grows with the input area.
    whole_res: int | None = None
    # a second whole-slice input size, scored against whole_res at the key slice: kept when
    # its predicted IoU is higher by zoom_margin (views.select_view; one more key-slice encode,
    # ~0.3 s). Default 192 (benchmarks/fullsize.md): it is chosen for 2 of 28 objects gated -
    # the CVPR25 CT colon 0.424 -> 0.704 (six-case final 0.8326 -> 0.8384) and the MR spleen
    # (tight box) 0.108 -> 0.825 - and changes no other object; None: the whole slice at S only
    whole_res_alt: int | None = 192
    # first runs from a box: decode every slice_step-th slice, fill the slices between by
    # signed-distance interpolation when the two decoded ends agree (2D Dice >= skip_dice),
    # else decode that gap slice by slice as with slice_step 1 (see skipping.py). Default 2
    # since the per-option gate (benchmarks/fullsize.md): box-protocol means CT organs
    # -0.0029, MR organs +0.0076, CT lesions -0.0002, CVPR25 six cases final +0.0029; the CT
    # liver 30 -> 23 encodes (0.79 x the time); lesions and the brain skip next to nothing
    slice_step: int = 2
    skip_dice: float = 0.9
    # the most encoder work a box prompt's first run plans for, in S x S slice encodes: a box
    # spanning n > encode_budget slices has its view encoded at the largest input r (a multiple
    # of 16, at least encode_budget_min_res) with n x (r / S)^2 <= encode_budget (views.budget_res;
    # PredictionResult.info["res_cap"]). Opt-in (benchmarks/fullsize.md): with 40 the MNI brain
    # (154 slices, at 128^2) takes 13.3 s instead of 83.4 s, Dice 0.167 -> 0.172, but its
    # 100-slice part (at 160^2) drops 0.251 -> 0.090; no gated object spans over 40 slices.
    # None: always the view's own size
    encode_budget: float | None = None
    encode_budget_min_res: int = 128
    window: tuple[float, float] | None = None  # CT (level, width)
    modality: str | None = None  # override "CT"/"MR"


def resolve_workers(options: SliceWiseOptions, on_cpu: bool, torch_threads: int) -> SliceWiseOptions:
    """Fill ``encode_workers`` / ``batch_size`` when None (in place; returns ``options``):
    CPU: ``min(2, torch threads)`` workers and a batch of one slice per worker; GPU: one
    worker, batches of 8."""
    if options.encode_workers is None:
        options.encode_workers = min(2, torch_threads) if on_cpu else 1
    if options.batch_size is None:
        options.batch_size = max(1, options.encode_workers) if on_cpu else 8
    return options

"""Fixed numbers of the slice-wise recipe (measured once; not options). ``docs/engine.md`` and
the write-ups under ``benchmarks/`` (tag ``experiments-2026-12``) give the measurements."""

ZOOM_MARGIN = 0.1  # a view replaces the other when its key-slice predicted IoU is higher by this
ZOOM_FACTOR = 2.2  # zoom crop side = this x the box side, resized to the model's S
CONTEXT = 5.0  # context crop side = this x the box side, at the whole slice's scale
MIN_CROP = 64  # smallest zoom crop (plane px)
MARGIN = 3  # px added around the previous slice's mask box when propagating
SKIP_DICE = 0.9  # slice skipping: the slices between two decoded ends are interpolated when these agree
BUDGET_MIN_RES = 128  # encode budget: never below this encoder input size
POINT_INTENSITY_STOP = 4.0  # points only: stop where the mask's mean departs > this x the seed's sd
REFINE_STOP_DICE = 0.98  # a re-decoded neighbour this close to its old mask ends a refinement pass
MODEL_CARRY = 1  # click_rule=model: neighbours re-decoded per direction (then the change is carried)
MAX_CHANGE = 0.5  # an addition larger than this x the slice's mask is not a correction
BALL_SD = 3.0  # the ball guard's tolerance, in robust SDs of the click's patch

"""``sam-med`` with a variant of the model click rule's size bound on negative clicks (issue 27,
``docs/engine.md`` "The size bound on negative clicks"). ``MAX_CHANGE`` and the carry are
constants of the engine, not options; this runs any ``sam-med`` command with them replaced.

    python benchmarks/click_bound_variants.py VARIANT evaluate DATA --protocol cvpr25 [...]

The engine's rule (since the click decoder v4): a negative click's removal (one-sided, connected
to the click) is kept whatever its size, on the clicked slice and through the carry; a positive
click's addition is bounded by ``MAX_CHANGE`` x the slice's mask. VARIANT:
  ``negbound``  the rule before: removals bounded like additions (``MAX_CHANGE``);
  ``negslice``  removals of any size on the clicked slice only; a removal over ``MAX_CHANGE`` x
                the slice's mask is not carried (neighbours keep the bound);
  ``addfree``   additions of any size too (no size bound at all).
"""

from __future__ import annotations

import sys


def _install(variant: str) -> None:
    import sam_med.predictors.slicewise.corrections as corr
    import sam_med.predictors.slicewise.model_clicks as mc
    from sam_med.predictors.slicewise.constants import MAX_CHANGE

    unbounded = mc.bounded_change  # the engine's: removals of any size

    def bounded(old, new, x, y, positive):  # removals bounded like additions
        ch = unbounded(old, new, x, y, positive)
        return None if ch is not None and ch.sum() > MAX_CHANGE * max(int(old.sum()), 1) else ch

    if variant == "negbound":
        mc.bounded_change = bounded
        return
    if variant == "addfree":
        mc.MAX_CHANGE = float("inf")  # the engine's bounded_change reads its module's constant
        return
    state = {"first": False, "big": False}
    model_click, radius_3d = mc.model_click, mc.ball_radius_3d

    def click(*a, **k):
        state["first"], state["big"] = True, False
        try:
            return model_click(*a, **k)
        finally:
            state["first"] = state["big"] = False

    def change(old, new, x, y, positive):
        first, state["first"] = state["first"], False
        if positive or not first:
            return bounded(old, new, x, y, positive)
        ch = unbounded(old, new, x, y, positive)
        state["big"] = ch is not None and ch.sum() > MAX_CHANGE * max(int(old.sum()), 1)
        return ch

    mc.model_click = corr.model_click = click
    mc.bounded_change = change
    mc.ball_radius_3d = lambda *a, **k: 0 if state["big"] else radius_3d(*a, **k)  # no carry


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in ("negbound", "negslice", "addfree"):
        print(__doc__, file=sys.stderr)
        return 2
    _install(argv[0])
    from sam_med.cli import main as cli

    return cli(argv[1:])


if __name__ == "__main__":
    raise SystemExit(main())

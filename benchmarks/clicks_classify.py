"""Where do the CVPR25 protocol's refinement clicks land, relative to the current mask?

Runs ``sam-med evaluate ... --protocol cvpr25`` in process with a wrapper around the
slice-wise predictor's click step that, before each click is applied, classifies it:

* ``a``  positive, on a slice with no mask (``a0``: the object has no mask on any slice);
* ``b``  positive, on a slice with a mask, farther than ``NEAR`` px from it;
* ``c``  positive, within ``NEAR`` px of the slice's mask (a missed rim / lobe it touches);
* ``d``  negative, in a component of the slice's mask other than its largest (a separate blob);
* ``e``  negative, inside the slice's largest component.

For ``a`` it also records how many slices away the nearest slice with a mask is. Writes
``click_classes.jsonl`` (one line per click) and prints the counts per case and in all.

    PYTHONPATH=$PWD python benchmarks/clicks_classify.py ../shared/cvpr25/cases /tmp/ext/edit \
        --option cache_dir=/work/notes/emb_eval [--option click_rule=edit] [--protocol points --clicks 3]

(other protocols than cvpr25 write no clicks.jsonl: then only the totals are printed).
"""

from __future__ import annotations

import collections
import json
import sys
from pathlib import Path

import numpy as np
from scipy import ndimage

NEAR = 5  # plane px: a positive click this close to the slice's mask "touches" it


def classify(st, geo, p, k: int) -> dict:
    """The case of click ``p`` (voxel Point) on slice ``k`` of state ``st`` (before it is applied)."""
    _, fx, fy = geo.to_plane(p.ijk)
    x, y = int(round(fx)), int(round(fy))
    cur = st.slices.get(k)
    m = cur.mask if cur is not None else np.zeros(geo.hw, bool)
    with_mask = [z for z, so in st.slices.items() if so.mask.any()]
    rec = {"slice": k, "positive": bool(p.positive)}
    if p.positive:
        if not m.any():
            rec["case"] = "a" if with_mask else "a0"
            rec["slices_to_mask"] = min((abs(z - k) for z in with_mask), default=None)
        else:
            d = float(ndimage.distance_transform_edt(~m)[y, x])
            rec["dist"] = d
            rec["case"] = "c" if d <= NEAR else "b"
    else:
        lab, n = ndimage.label(m, np.ones((3, 3), bool))
        if not m[y, x]:
            rec["case"] = "agrees"
        else:
            sizes = ndimage.sum(m, lab, range(1, n + 1))
            rec["case"] = "e" if lab[y, x] == 1 + int(np.argmax(sizes)) else "d"
    return rec


def main(argv: list[str]) -> int:
    from sam_med.cli import main as cli_main
    from sam_med.predictors.slicewise import predictor as mod

    out = Path(argv[1])
    records: list[dict] = []
    orig = mod.apply_click

    def wrapped(pred, st, geo, p, k, rule="edit"):
        records.append(classify(st, geo, p, k))
        return orig(pred, st, geo, p, k, rule)

    mod.apply_click = wrapped
    extra = list(argv[2:]) if "--protocol" in argv[2:] else ["--protocol", "cvpr25", *argv[2:]]
    rc = cli_main(["evaluate", argv[0], "--out", str(out), *extra])
    # the protocol runs the cases in order: attribute clicks to cases through clicks.jsonl
    per_case = collections.OrderedDict()
    i = 0
    clicks_file = out / "clicks.jsonl"
    if clicks_file.exists():
        for line in clicks_file.read_text().splitlines():
            row = json.loads(line)
            n = sum(len(c) for c in row["clicks"])
            per_case[row["CaseName"]] = records[i:i + n]
            i += n
    with open(out / "click_classes.jsonl", "w") as f:
        for case, recs in per_case.items():
            for r in recs:
                f.write(json.dumps({"case_name": case, **r}) + "\n")
    total = collections.Counter(r["case"] for r in records)
    for case, recs in per_case.items():
        print(case, dict(collections.Counter(r["case"] for r in recs)))
    print("all", dict(total), "clicks", len(records))
    return rc


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

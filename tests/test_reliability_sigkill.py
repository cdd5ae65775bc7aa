"""Issue #18 case 9: SIGKILL at random moments while a DICOM SEG, its sidecar and the session
are written leaves either the previous complete set or the new complete set, never a temp file,
as the next sam-med process sees it: a kill between two renames of the set is finished by the
next start (its commit journal rolls the set forward).

A child process writes the set again and again (``segment.write_outputs``, the code path of
``sam-med segment``), each iteration tagged with its number; the parent kills it 20 times at
random moments and checks the output folder after each kill.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sam_med import io
from sam_med.io.atomic import sweep_stale
from sam_med.session import Session

from _reliability import dicom_copy

ROOT = Path(__file__).resolve().parents[1]
NAMES = {"seg.dcm", "seg.dcm.json", "s.npz"}

CHILD = r"""
import sys, numpy as np
from sam_med import io
from sam_med.cli.segment import write_outputs
from sam_med.session import Session
src, out = sys.argv[1], sys.argv[2]
vol = io.load(src)
s = Session(vol)
s.add_object("iter 0", id=1)
k = 0
while True:
    k += 1
    m = np.zeros(vol.shape, bool)
    m[10 + k % 50: 60 + k % 50, 20:90, 2:18] = True
    s.rename(1, f"iter {k}")
    s.set_mask(1, m)
    write_outputs(s, out + "/seg.dcm", "dicom-seg", out + "/s.npz", extra={"iteration": k})
    print("ready" if k == 1 else k, flush=True)  # the parent kills only after the first set exists
"""


def _check_set(out: Path, vol) -> int | None:
    """The iteration the folder's complete set belongs to (None: nothing written yet)."""
    names = {p.name for p in out.iterdir()}
    assert names <= NAMES, f"unexpected files after SIGKILL: {sorted(names - NAMES)}"
    if not names:
        return None
    assert names == NAMES, f"an incomplete set: {sorted(names)}"
    side = json.loads((out / "seg.dcm.json").read_text())
    assert side["output"]["sha256"] == hashlib.sha256((out / "seg.dcm").read_bytes()).hexdigest()
    k = side["extra"]["iteration"]
    sess = Session.load(out / "s.npz", vol)
    assert sess.get(1).name == f"iter {k}"
    return k


@pytest.mark.slow
def test_9_sigkill_leaves_old_or_new_complete_set(data_dir, tmp_path):
    src = dicom_copy(data_dir, tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    env = dict(os.environ, PYTHONPATH=str(ROOT), TMPDIR=str(tmp))
    vol = io.load(src)
    rng = random.Random(18)
    seen = []
    for _ in range(20):
        p = subprocess.Popen([sys.executable, "-c", CHILD, str(src), str(out)], stdout=subprocess.PIPE,
                             text=True, env=env)
        assert p.stdout.readline().strip() == "ready"
        time.sleep(rng.uniform(0.0, 1.0))
        p.send_signal(signal.SIGKILL)
        p.wait(timeout=30)
        sweep_stale(str(tmp))  # what every sam-med start does first
        seen.append(_check_set(out, vol))
    assert None not in seen and len(set(seen)) > 1, seen  # kills landed in different iterations
    assert not [n for n in os.listdir(tmp) if n.startswith("sam-med-stage-")]  # swept after each kill

"""The one Dice and the one largest-component helper (sam_med.masks)."""

from __future__ import annotations

import numpy as np
import pytest

from sam_med.masks import dice, largest_component


def test_dice_values_and_empty_rules():
    a = np.zeros((4, 5), bool)
    b = np.zeros((4, 5), bool)
    assert dice(a, b) == 1.0
    a[0, :2] = True
    assert dice(a, b) == 0.0
    b[0, 1:4] = True  # |A|=2, |B|=3, overlap 1
    assert dice(a, b) == pytest.approx(2 * 1 / 5)
    v = np.random.default_rng(0).random((6, 7, 8)) > 0.5
    assert dice(v, v) == 1.0
    with pytest.raises(ValueError, match="shape"):
        dice(a, v)


def test_largest_component_full_connectivity_2d_and_3d():
    m = np.zeros((6, 6), bool)
    m[0, 0] = m[1, 1] = m[2, 2] = True  # one diagonal (8-connected) component of 3
    m[5, 3:6] = True                     # 3 pixels too: tie -> the first label wins
    m[4, 0:2] = True                     # 2 pixels
    got = largest_component(m)
    assert got.sum() == 3 and got[0, 0] and got[2, 2]
    v = np.zeros((4, 4, 4), bool)
    v[0, 0, 0] = v[1, 1, 1] = True       # 26-connected corner neighbours
    v[3, 3, 0] = True
    assert largest_component(v).sum() == 2
    assert not largest_component(np.zeros((3, 3), bool)).any()

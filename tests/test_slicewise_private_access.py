"""No module of the engine reads another object's private attributes: ``obj._name`` is allowed
only on ``self`` / ``cls`` / ``super()`` (a class's own state), never across parts."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "sam_med"
FILES = sorted((ROOT / "predictors").rglob("*.py")) + [ROOT / "session.py", ROOT / "training" / "data.py",
                                                       ROOT / "training" / "sources.py"]


def private_reads(path: Path) -> list[str]:
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if not isinstance(node, ast.Attribute):
            continue
        name = node.attr
        if not name.startswith("_") or (name.startswith("__") and name.endswith("__")):
            continue
        owner = node.value
        if isinstance(owner, ast.Name) and owner.id in ("self", "cls"):
            continue
        if isinstance(owner, ast.Call) and isinstance(owner.func, ast.Name) and owner.func.id == "super":
            continue
        out.append(f"{path.relative_to(ROOT.parent)}:{node.lineno}: .{name} on {ast.unparse(owner)}")
    return out


def test_no_private_attribute_reads_across_objects():
    hits = [h for f in FILES for h in private_reads(f)]
    assert hits == [], "\n".join(hits)


def test_engine_files_stay_small():
    big = [f"{f.relative_to(ROOT.parent)}: {n}" for f in FILES if (n := len(f.read_text().splitlines())) > 400]
    assert big == [], big

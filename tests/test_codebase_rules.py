"""Codebase rules for every source file of ``sam_med/`` and ``napari_plugin/`` (issue 17):

* no object reads another object's private attributes: ``obj._name`` is allowed only on
  ``self`` / ``cls`` / ``super()`` (a class's own state), never across objects or modules;
* no source file is over 400 lines.

Third-party private attributes that have no public equivalent are listed in
:data:`ALLOWED` with the reason; anything else found here is a bug to fix, not to list.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("sam_med", "napari_plugin")
MAX_LINES = 400

#: (file relative to the repository, attribute) -> why it is read there
ALLOWED: dict[tuple[str, str], str] = {
    # torch.Tensor._version: the in-place modification counter. torch has no public accessor;
    # the fused conv+BN cache keys on it so an in-place weight update (load_state_dict,
    # optimizer step) invalidates the folded weights.
    ("sam_med/models/common.py", "_version"): "torch tensor version counter",
}


def source_files() -> list[Path]:
    files = [f for pkg in PACKAGES for f in sorted((REPO / pkg).rglob("*.py"))]
    return [f for f in files if "__pycache__" not in f.parts]


def private_reads(path: Path) -> list[tuple[int, str, str]]:
    """``(line, attribute, owner source)`` of each ``owner._name`` where the owner is not
    ``self``, ``cls`` or ``super()``; dunder names (``__class__`` ...) are public."""
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
        out.append((node.lineno, name, ast.unparse(owner)))
    return out


def test_the_walk_sees_both_packages():
    files = source_files()
    for pkg in PACKAGES:
        assert any(f.relative_to(REPO).parts[0] == pkg for f in files), pkg


def test_private_reads_are_detected(tmp_path):
    f = tmp_path / "m.py"
    f.write_text("class A:\n    def f(self, other):\n        self._a = other._b\n"
                 "        super()._c()\n        return cls._d, other.__class__, mod._e\n")
    assert [(n, o) for _, n, o in private_reads(f)] == [("_b", "other"), ("_e", "mod")]


def test_no_private_attribute_reads_across_objects():
    hits, used = [], set()
    for f in source_files():
        rel = f.relative_to(REPO).as_posix()
        for line, name, owner in private_reads(f):
            if (rel, name) in ALLOWED:
                used.add((rel, name))
                continue
            hits.append(f"{rel}:{line}: .{name} on {owner}")
    assert hits == [], "\n".join(hits)
    assert used == set(ALLOWED), f"stale allow-list entries: {sorted(set(ALLOWED) - used)}"


@pytest.mark.parametrize("pkg", PACKAGES)
def test_no_source_file_over_400_lines(pkg):
    big = [f"{f.relative_to(REPO).as_posix()}: {n} lines" for f in source_files()
           if f.relative_to(REPO).parts[0] == pkg and (n := len(f.read_text().splitlines())) > MAX_LINES]
    assert big == [], big


# ---------------------------------------------------------------- layering (issue 26)
#: sam_med's top-level units, bottom to top: a unit imports only from its own layer or below,
#: and no set of modules imports itself round (function-level imports counted)
LAYERS: list[set[str]] = [
    {"errors", "provenance"},
    {"volume"},
    {"prompts", "masks", "transforms", "voxelwise", "distributed"},
    {"io"},
    {"models"},
    {"predictors"},
    {"session"},
    {"evaluation"},
    {"training"},
    {"dataengine"},
    {"cli", "__main__"},
]


def _module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph(root: Path = REPO) -> dict[str, set[str]]:
    """``{module: {sam_med modules it imports}}`` over every ``import`` in ``sam_med/`` (at any
    depth: module level, in functions, under ``if``), relative imports resolved; ``from pkg
    import name`` counts ``pkg.name`` when that is a module, else ``pkg``."""
    files = [f for f in sorted((root / "sam_med").rglob("*.py")) if "__pycache__" not in f.parts]
    mods = {_module_name(f, root): f for f in files}
    graph: dict[str, set[str]] = {}
    for mod, f in mods.items():
        pkg = mod if f.name == "__init__.py" else mod.rsplit(".", 1)[0]
        out = set()
        for node in ast.walk(ast.parse(f.read_text(), str(f))):
            if isinstance(node, ast.Import):
                out |= {a.name for a in node.names if a.name.split(".")[0] == "sam_med"}
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = pkg.split(".")[: len(pkg.split(".")) - (node.level - 1)]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                if target.split(".")[0] == "sam_med":
                    out |= {f"{target}.{a.name}" if f"{target}.{a.name}" in mods else target for a in node.names}
        graph[mod] = {m for m in out if m != mod and m in mods}
    return graph


def _unit(mod: str) -> str | None:
    parts = mod.split(".")
    return parts[1] if len(parts) > 1 else None


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_import_graph_sees_function_level_imports(tmp_path):
    pkg = tmp_path / "sam_med"
    (pkg / "a").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "a" / "__init__.py").write_text("from .x import f\n")
    (pkg / "a" / "x.py").write_text("def f():\n    from ..b import g\n    return g\n")
    (pkg / "b.py").write_text("def g():\n    import sam_med.a.x\n")
    graph = import_graph(tmp_path)
    assert graph["sam_med.a.x"] == {"sam_med.b"} and graph["sam_med.b"] == {"sam_med.a.x"}
    assert _cycles(graph) == [["sam_med.a.x", "sam_med.b"]]


def test_every_unit_has_a_layer():
    layered = set().union(*LAYERS)
    units = {_unit(m) for m in import_graph()} - {None}
    assert units <= layered, f"give these a layer in LAYERS: {sorted(units - layered)}"


def test_no_upward_import():
    layer = {u: i for i, names in enumerate(LAYERS) for u in names}
    bad = [f"{a} -> {b}" for a, targets in sorted(import_graph().items()) for b in sorted(targets)
           if _unit(a) and _unit(b) and layer.get(_unit(a), 99) < layer.get(_unit(b), 99)]
    assert bad == [], "\n".join(bad)


def test_no_import_cycle():
    assert _cycles(import_graph()) == []

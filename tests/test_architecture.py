"""Dependencies point one way (docs/architecture.md): every import between the package's rooms, also those inside
functions, goes to a lower layer.  Command lines (``__main__``, ``_main``, ``_cli``, ``merge``) and the main-job
orchestrator sit on top and may import any room."""
import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "pyserini_hypencoder"
# Lower numbers are lower layers; a room imports only rooms of lower layers (and itself).
LAYERS = {
    "_typed": 0, "_fsutil": 0, "_threads": 0, "_lazy": 0, "_java": 0, "_compat": 0, "resources": 0, "cli": 0,
    "strategies": 1, "topk": 1, "metrics": 1, "formats": 1, "model": 1,
    "index": 2, "encoders": 2,
    "ann": 3,
    "search": 4,
    "encode": 5, "train": 5, "distributed": 5, "server": 6,
    "reproduce": 7,
}
ENTRY_POINTS = ("__main__", "_main", "_cli", "merge")


def _imports(path: Path, module: str):
    """Absolute names of the package's modules that ``path`` (module ``module``) imports anywhere in its body."""
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = ".".join(package[:len(package) - node.level + 1] + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            yield base
            yield from (f"{base}.{alias.name}" for alias in node.names)


def _room(name: str):
    parts = name.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "pyserini_hypencoder" else None


def test_imports_between_rooms_go_to_lower_layers():
    upward = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module = ".".join(("pyserini_hypencoder",) + path.relative_to(PACKAGE).with_suffix("").parts)
        module = module.removesuffix(".__init__")
        source = _room(module)
        if source is None or path.stem in ENTRY_POINTS:
            continue
        assert source in LAYERS, f"{module}: room {source!r} has no layer in this test (and docs/architecture.md)"
        for target in map(_room, _imports(path, module)):
            if target and target != source and target in LAYERS and LAYERS[target] >= LAYERS[source]:
                upward.append(f"{module} -> {target}")
    assert not upward, "imports that do not go down a layer: " + ", ".join(sorted(set(upward)))


def test_the_test_sees_an_upward_import(tmp_path):
    """The check itself: a function-level import from index into search is found."""
    path = tmp_path / "pyserini_hypencoder" / "index" / "x.py"
    path.parent.mkdir(parents=True)
    path.write_text("def f():\n    from ..search import HypencoderSearcher\n")
    targets = {_room(t) for t in _imports(path, "pyserini_hypencoder.index.x")}
    assert "search" in targets and LAYERS["search"] > LAYERS["index"]

"""The package's layers import one way: model sources below the task API, the prepare
worker below its driver and the video worker.

Every import statement counts, also those inside functions (a lazy import is still a
dependency), so the graph is read from the source files rather than from ``sys.modules``.
"""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import metis_speech

PACKAGE = Path(metis_speech.__file__).resolve().parent


def _module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _imports(path: Path) -> set:
    """Every metis_speech module ``path`` imports (absolute and relative, at any depth)."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            out.add(mod)
            out.update(f"{mod}.{a.name}" for a in node.names)  # "from . import bundle"
    return {m for m in out if m.split(".")[0] == "metis_speech"}


def _graph() -> dict:
    """module -> the package modules it imports. The package root is left out: its
    ``__init__`` only sets ``__version__`` and imports the task API lazily, on first access to
    ``metis_speech.Metis``, so ``from . import __version__`` does not depend on it."""
    files = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    files.pop("metis_speech")
    return {name: {m for m in _imports(p) if m in files and m != name} for name, p in files.items()}


def _reaches(graph: dict, start: str) -> set:
    seen, todo = set(), [start]
    while todo:
        for m in graph.get(todo.pop(), ()):
            if m not in seen:
                seen.add(m)
                todo.append(m)
    return seen


# lower module -> modules it must never reach, directly or through others
FORBIDDEN = {
    "metis_speech.bundle": ["metis_speech.pipeline", "metis_speech.sources", "metis_speech.shipped", "metis_speech.tasks_cli"],
    "metis_speech.hub": ["metis_speech.pipeline", "metis_speech.sources", "metis_speech.shipped", "metis_speech.bundle"],
    "metis_speech.shipped": ["metis_speech.pipeline", "metis_speech.sources", "metis_speech.tasks_cli"],
    "metis_speech.sources": ["metis_speech.pipeline", "metis_speech.tasks_cli"],
    "metis_speech.inputs": ["metis_speech.pipeline", "metis_speech.sources", "metis_speech.hub", "metis_speech.bundle"],
    "metis_speech.training.prepare_worker": ["metis_speech.training.prepare", "metis_speech.training.prepare_video"],
    "metis_speech.training.prepare_video": ["metis_speech.training.prepare"],
}


@pytest.mark.parametrize("lower", sorted(FORBIDDEN))
def test_lower_layers_do_not_reach_upper_ones(lower):
    graph = _graph()
    assert lower in graph, f"{lower} is not a module of the package"
    bad = sorted(set(FORBIDDEN[lower]) & _reaches(graph, lower))
    assert not bad, f"{lower} imports (directly or through others) {bad}"


def test_the_graph_reader_sees_lazy_and_relative_imports():
    graph = _graph()
    # tasks_cli imports the task API inside a function; prepare_video from a sibling module;
    # sources with "from . import bundle, hub"
    assert "metis_speech.pipeline" in graph["metis_speech.tasks_cli"]
    assert "metis_speech.training.prepare_worker" in graph["metis_speech.training.prepare_video"]
    assert {"metis_speech.bundle", "metis_speech.hub"} <= graph["metis_speech.sources"]
    assert "metis_speech.pipeline" in _reaches(graph, "metis_speech.training.prepare")


def test_importing_bundle_or_shipped_loads_no_task_api():
    code = ("import sys, metis_speech.bundle, metis_speech.shipped, metis_speech.sources; "
            "bad = [m for m in ('metis_speech.pipeline', 'metis_speech.tasks_cli') if m in sys.modules]; "
            "print(bad); sys.exit(1 if bad else 0)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr

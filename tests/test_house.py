"""The house rules that keep the architecture readable: no import cycle inside interp/ (lazy imports
count), no module __getattr__, no file over 400 lines, and the library never imports gradio."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LIBRARY = ROOT / "interp"
MAX_LINES = 400


def _module_name(path: Path, top: Path = ROOT) -> str:
    """The dotted name of the module file `path` under the import root `top`."""
    parts = path.relative_to(top).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _resolve(node: ast.ImportFrom, name: str, is_package: bool) -> str | None:
    """The absolute module a `from ... import` in module `name` names (relative ones resolved as
    importlib does: level 1 is the module's own package, each further level one package up); None
    when a relative import climbs above the top package."""
    if node.level == 0:
        return node.module
    package = name.split(".") if is_package else name.split(".")[:-1]
    if node.level - 1 >= len(package):
        return None
    base = package[:len(package) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _imports(path: Path, modules: set, top: Path = ROOT) -> set:
    """Library modules that `path` imports anywhere (top level or inside functions), absolute or
    relative (`from . import data` in a.b.c counts as a.b and a.b.data)."""
    name, is_package = _module_name(path, top), path.name == "__init__.py"
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and (module := _resolve(node, name, is_package)):
            names = [module] + [f"{module}.{a.name}" for a in node.names]
        found |= {n for n in names if n in modules}
    return found


def _graph(package: Path = LIBRARY) -> dict:
    """Module name -> the package's modules it imports, for every module file under `package`."""
    top = package.parent
    files = {_module_name(p, top): p for p in package.rglob("*.py")}
    return {name: _imports(path, set(files), top) - {name} for name, path in files.items()}


def _cycle(graph: dict):
    """One import cycle as a list of modules, or None (depth-first search)."""
    state: dict = {}

    def visit(node, stack):
        state[node] = "open"
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt, stack + [nxt])):
                return found
        state[node] = "done"
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start, [start])):
            return found
    return None


def test_the_cycle_finder_finds_a_planted_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def _package(root: Path, files: dict) -> Path:
    for relative, text in files.items():
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_text(text)
    return root / "pkg"


def test_relative_imports_are_resolved_and_a_cycle_through_them_is_found(tmp_path):
    # By hand: pkg.a -> pkg.b (`from . import b`), pkg.b -> pkg.sub and pkg.sub.c (`from .sub import c`),
    # pkg.sub -> pkg.sub.c, pkg.sub.c -> pkg.a (`from ..a import f`): made of relative imports only, the
    # cycle a -> b -> sub -> sub.c -> a (the search takes b's edges in sorted order: pkg.sub first).
    pkg = _package(tmp_path, {
        "pkg/__init__.py": "",
        "pkg/a.py": "from . import b\nimport os\n\ndef f():\n    return b\n",
        "pkg/b.py": "def g():\n    from .sub import c\n    return c\n",
        "pkg/sub/__init__.py": "from . import c  # the package's own __init__: level 1 is pkg.sub\n",
        "pkg/sub/c.py": "from ..a import f\nfrom json import dumps\n",
        "pkg/d.py": "from .sub.c import dumps\nfrom ... import nowhere  # above the top package: ignored\n",
    })
    assert _graph(pkg) == {
        "pkg": set(), "pkg.a": {"pkg", "pkg.b"}, "pkg.b": {"pkg.sub", "pkg.sub.c"},
        "pkg.sub": {"pkg.sub.c"}, "pkg.sub.c": {"pkg.a"}, "pkg.d": {"pkg.sub.c"}}
    assert _cycle(_graph(pkg)) == ["pkg.a", "pkg.b", "pkg.sub", "pkg.sub.c", "pkg.a"]
    (pkg / "sub" / "c.py").write_text("from json import dumps\n")  # break the cycle
    assert _cycle(_graph(pkg)) is None


def test_the_library_graph_sees_relative_imports():
    # interp/toy/detect.py has `from . import data`: an edge to interp.toy.data (and the package)
    assert {"interp.toy", "interp.toy.data"} <= _graph()["interp.toy.detect"]


def test_no_import_cycle_in_the_library():
    # A package's own modules importing the package __init__ for a constant is not a cycle unless
    # the __init__ imports them back, which the graph would show.
    assert _cycle(_graph()) is None


def test_no_module_getattr_and_no_file_over_the_limit():
    for path in list(LIBRARY.rglob("*.py")) + list((ROOT / "ui").rglob("*.py")) + [ROOT / "app.py"]:
        tree = ast.parse(path.read_text())
        assert not any(isinstance(n, ast.FunctionDef) and n.name == "__getattr__" for n in tree.body), path
        assert len(path.read_text().splitlines()) <= MAX_LINES, f"{path} is over {MAX_LINES} lines"


def test_importing_every_library_module_never_imports_gradio():
    names = sorted(n for n in _graph() if not n.endswith("__main__"))
    code = ("import importlib, sys\n"
            f"for name in {names!r}:\n    importlib.import_module(name)\n"
            "print('gradio' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "False"

"""One-way dependencies: trainers/ and envs/ (plain torch, plain Python) import neither Ray nor the cluster/
or actors/ layers; actors/ (thin Ray actors) import nothing from cluster/. Checked on the source with ast,
imports at module level and inside functions alike, and importlib.import_module / __import__ with a literal."""
import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RULES = {"trainers": {"ray", "cluster", "actors"}, "envs": {"ray", "cluster", "actors"}, "actors": {"cluster"}}


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in the file."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against the file's package
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            out.append((node.lineno, module))
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant) \
                and isinstance(node.args[0].value, str):
            f = node.func
            name = f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", "")
            if name in ("import_module", "__import__"):
                out.append((node.lineno, node.args[0].value))
    return out


def violations(layer: str) -> list[str]:
    banned = RULES[layer]
    found = []
    for path in sorted((ROOT / layer).rglob("*.py")):
        for line, module in imported_modules(path):
            if module.split(".")[0] in banned:
                found.append(f"{path.relative_to(ROOT)}:{line} imports {module}")
    return found


@pytest.mark.parametrize("layer", sorted(RULES))
def test_layer_imports_only_downwards(layer):
    assert (ROOT / layer).is_dir()
    assert violations(layer) == []


def test_the_checker_sees_function_level_and_relative_imports(tmp_path, monkeypatch):
    pkg = tmp_path / "trainers"
    pkg.mkdir()
    (pkg / "bad.py").write_text("import torch\n\ndef f():\n    import ray.util\n    from cluster import config\n"
                                "    return __import__('actors.weights')\n")
    (pkg / "ok.py").write_text("from . import bad\nfrom .bad import f\n")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    assert violations("trainers") == ["trainers/bad.py:4 imports ray.util", "trainers/bad.py:5 imports cluster",
                                      "trainers/bad.py:6 imports actors.weights"]
    assert [m for _, m in imported_modules(pkg / "ok.py")] == ["trainers", "trainers.bad"]


PACKAGES = ("cluster", "actors", "trainers", "envs")


def module_name(path: Path, root: Path) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph(root: Path = None) -> dict[str, set[str]]:
    """module -> the project modules it imports (at module level or inside functions). `from a.b import c` names
    a.b.c where that is a module, else a.b; importing a.b.c also runs a/__init__ and a/b/__init__, which count
    only when they hold code (a package face that is just a docstring imports nothing)."""
    root = root or ROOT
    paths = {module_name(p, root): p for pkg in PACKAGES for p in (root / pkg).rglob("*.py")}
    has_code = {n for n, p in paths.items() if p.name == "__init__.py" and any(
        isinstance(s, (ast.Import, ast.ImportFrom)) for s in ast.walk(ast.parse(p.read_text())))}
    graph: dict[str, set[str]] = {}
    for name, path in paths.items():
        targets = set()
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            found = []
            if isinstance(node, ast.Import):
                found = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    pkg = name if path.name == "__init__.py" else name.rpartition(".")[0]
                    base = pkg.split(".")[: len(pkg.split(".")) - (node.level - 1)]
                    module = ".".join(base + ([node.module] if node.module else []))
                else:
                    module = node.module or ""
                found = [f"{module}.{a.name}" if f"{module}.{a.name}" in paths else module for a in node.names]
            for module in found:
                parents = [".".join(module.split(".")[:i]) for i in range(1, module.count(".") + 1)]
                implicit = [p for p in parents if p in has_code and not name.startswith(p + ".")]
                targets.update(m for m in [module, *implicit] if m in paths and m != name)
        graph[name] = targets
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), each sorted."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph.get(v, ())):
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

    sys.setrecursionlimit(10_000)
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_no_import_circles():
    """No two modules import each other, directly or around a loop, counting imports inside functions."""
    assert circles(import_graph()) == []


def test_the_circle_check_sees_a_loop_through_a_function_level_import(tmp_path, monkeypatch):
    for pkg in PACKAGES:
        (tmp_path / pkg).mkdir()
    (tmp_path / "cluster" / "a.py").write_text("from cluster.b import x\n")
    (tmp_path / "cluster" / "b.py").write_text("x = 1\n\ndef f():\n    from cluster import a\n")
    (tmp_path / "cluster" / "c.py").write_text("from cluster.a import x\n")
    assert circles(import_graph(tmp_path)) == [["cluster.a", "cluster.b"]]


def private_imports(root: Path = None) -> list[str]:
    """`from project.module import _name`: a module's private name used by another module."""
    root = root or ROOT
    found = []
    for pkg in PACKAGES:
        for path in sorted((root / pkg).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
                if isinstance(node, ast.ImportFrom) and (node.level or (node.module or "").split(".")[0] in PACKAGES):
                    found += [f"{path.relative_to(root)}:{node.lineno} imports {node.module}.{a.name}"
                              for a in node.names if a.name.startswith("_") and not a.name.startswith("__")]
    return found


def test_no_private_name_is_imported_across_modules():
    assert private_imports() == []


CLUSTER_LAYERS = (  # lowest first: a module imports its own layer and the ones below, never one above
    {"config", "rundir"}, {"evaluation"}, {"runtime"}, {"episodes"}, {"reports", "runconfig"},
    {"cli", "train", "driver", "sweep", "evaluate", "env_cli"},  # the commands and the driver loop
)


def cluster_layer(module: str) -> int:
    part = module.split(".")[1] if module.count(".") else ""
    return next((i for i, names in enumerate(CLUSTER_LAYERS) if part in names), -1)


def upward_imports(root: Path = None) -> list[str]:
    return [f"{a} imports {b}" for a, targets in import_graph(root).items() if a.startswith("cluster.")
            for b in sorted(targets) if b.startswith("cluster.") and cluster_layer(b) > cluster_layer(a)]


def test_cluster_imports_only_downwards():
    assert all(cluster_layer(m) >= 0 for m in import_graph() if m.startswith("cluster.")), \
        [m for m in import_graph() if m.startswith("cluster.") and cluster_layer(m) < 0]
    assert upward_imports() == []


def test_the_layer_check_sees_an_upward_import(tmp_path):
    for pkg in PACKAGES:
        (tmp_path / pkg).mkdir()
    for sub in ("config", "runtime"):
        (tmp_path / "cluster" / sub).mkdir()
    (tmp_path / "cluster" / "runtime" / "pool.py").write_text("from cluster.config.errors import ConfigError\n")
    (tmp_path / "cluster" / "config" / "errors.py").write_text("def f():\n    from cluster.runtime import pool\n")
    assert upward_imports(tmp_path) == ["cluster.config.errors imports cluster.runtime.pool"]

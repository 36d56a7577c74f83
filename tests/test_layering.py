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

"""Shared fixtures of the deployment tests: the project's pins and the command-line tools they run."""
import shutil
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


@pytest.fixture(scope="session")
def pins(pyproject) -> dict[str, str]:
    """Package name -> version for every `name==version` requirement, extras included."""
    project = pyproject["project"]
    reqs = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        reqs += extra
    out = {}
    for req in map(Requirement, reqs):
        exact = [s.version for s in req.specifier if s.operator == "=="]
        if exact:
            out[req.name.lower()] = exact[0]
    return out


@pytest.fixture(scope="session")
def tool():
    """The path of a command-line tool from the `test` extra: the venv's own first, then PATH."""
    def find(name: str) -> str:
        here = Path(sys.executable).parent / name
        path = str(here) if here.exists() else shutil.which(name)
        if path is None:
            pytest.fail(f"{name} is missing: install the test extra (pip install -e '.[test]')")
        return path
    return find

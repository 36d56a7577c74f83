"""Find environment source files: builtins by name, or any .py path."""
from __future__ import annotations

from pathlib import Path

from envs.errors import UnknownEnvironmentError

BUILTIN_DIR = Path(__file__).resolve().parent / "builtin"
SEEDS_DIR = Path(__file__).resolve().parent / "seeds"
STARTERS_DIR = Path(__file__).resolve().parent / "starters"
# selfplay.seed_set: which hand-written environments a self-play library starts from
SEED_SETS = ("puzzles", "starters", "all")


def _files(folder: Path) -> dict[str, Path]:
    return {p.stem: p for p in sorted(folder.glob("*.py")) if not p.stem.startswith("_")}


def builtin_environments() -> dict[str, Path]:
    """Map builtin environment names (file stems) to their source files."""
    return _files(BUILTIN_DIR)


def seed_environments(seed_set: str = "puzzles") -> dict[str, Path]:
    """Hand-written environments a self-play library starts from: "puzzles", the ten seed puzzles
    (envs/seeds/: planted and verifiable, hard by hand); "starters", six short easy tasks in one plain style
    (envs/starters/: a small model solves some and can write a file like them); "all", both."""
    if seed_set not in SEED_SETS:
        raise UnknownEnvironmentError(f"unknown seed set {seed_set!r}: use one of {', '.join(SEED_SETS)}")
    out = {}
    if seed_set in ("puzzles", "all"):
        out.update(_files(SEEDS_DIR))
    if seed_set in ("starters", "all"):
        out.update(_files(STARTERS_DIR))
    return out


def resolve_environment(name_or_path: str, kind: str = "file", rg_config: dict | None = None) -> tuple[str, str]:
    """Return (name, source text) for a builtin or seed name, a path to a .py file,
    or (kind="reasoning_gym") a Reasoning Gym dataset name with its dataset parameters `rg_config`."""
    if kind == "reasoning_gym":
        from envs.adapters.reasoning_gym import resolve

        return resolve(name_or_path, rg_config)
    if rg_config:
        raise UnknownEnvironmentError(f"env.rg_config={dict(rg_config)} is for Reasoning Gym datasets; "
                                      f"{name_or_path!r} is env.kind={kind!r}")
    if kind != "file":
        raise UnknownEnvironmentError(f"environment kind {kind!r}: use 'file' or 'reasoning_gym'")
    builtins = {**builtin_environments(), **seed_environments("all")}
    if name_or_path in builtins:
        return name_or_path, builtins[name_or_path].read_text(encoding="utf-8")
    path = Path(name_or_path)
    if path.suffix == ".py" and path.is_file():
        return path.stem, path.read_text(encoding="utf-8")
    available = ", ".join(builtins) or "(none)"
    what = f"no such file {name_or_path!r}" if path.suffix == ".py" else \
        f"unknown environment {name_or_path!r}"
    raise UnknownEnvironmentError(
        f"{what}; available builtins: {available} (or pass a path to a .py file)")

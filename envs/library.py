"""The environment library: a persistent, versioned training output (SPEC section 1).

Every environment the solver trains on lives here with its source, lineage
(the library environments shown to the generator when it was written), gate
results, calibration statistics and usage history. Rotation retires the
environments the solver has mastered; they stay on disk with their history.

On-disk layout (inside the run directory)::

    <folder>/library.json           index: format, version, entry names and states
    <folder>/envs/<name>/source.py  the environment source
    <folder>/envs/<name>/meta.json  everything else about the entry

Every change bumps ``version`` and is written at once (``autosave``); each file
is written to a temporary file and moved into place with ``os.replace``, entry
files before the index, so a crash never leaves a half-written file or an
index naming files that do not exist. Missing or corrupt files raise
``LibraryError`` naming the file.
"""
from __future__ import annotations

import json
import math
import os
import random
import re
import tempfile
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Iterable, Sequence

INDEX = "library.json"
FORMAT = 1
KINDS = ("seed", "generated", "task")  # task: the run's own environment (selfplay.seed_env)
STATUSES = ("active", "retired")
MAX_NAME = 64


class LibraryError(RuntimeError):
    """The library on disk is missing, corrupt or inconsistent, or a request names no entry."""


@dataclass
class LibraryEntry:
    """One environment of the library.

    ``calibration`` holds the L5 result (``difficulty``, ``p``, ``n_instances``,
    ``n_rollouts``); ``usage`` one record per solver step that used the
    environment (``step``, ``pass_rate``, ``count`` rollouts); ``prompts`` a few
    instance prompts, compared by the novelty gate.
    """

    name: str
    source: str
    kind: str = "generated"
    lineage: list[str] = field(default_factory=list)
    gates: list[dict] = field(default_factory=list)
    calibration: dict = field(default_factory=dict)
    admitted_step: int = 0
    status: str = "active"
    retired_step: int | None = None
    usage: list[dict] = field(default_factory=list)
    prompts: list[str] = field(default_factory=list)
    origin: str = ""  # where the entry came from when another library seeded this one

    def meta(self) -> dict:
        """Everything but the source, as stored in meta.json."""
        d = asdict(self)
        del d["source"]
        return d

    @classmethod
    def from_meta(cls, meta: dict, source: str) -> "LibraryEntry":
        known = {f.name for f in fields(cls)} - {"source"}
        return cls(source=source, **{k: v for k, v in meta.items() if k in known})


def safe_name(name: str) -> str:
    """A file-system-safe entry name: lowercase letters, digits and underscores, at most 64 characters."""
    s = re.sub(r"[^a-z0-9_]+", "_", str(name).lower()).strip("_")[:MAX_NAME].strip("_")
    return s or "env"


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _read_json(path: Path) -> dict:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise LibraryError(f"library file {path} is missing") from None
    except OSError as e:
        raise LibraryError(f"cannot read library file {path}: {e}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise LibraryError(f"library file {path} is corrupt: {e}") from None
    if not isinstance(data, dict):
        raise LibraryError(f"library file {path} is corrupt: expected a JSON object, got {type(data).__name__}")
    return data


def _entry_problem(entry: LibraryEntry) -> str | None:
    if entry.kind not in KINDS:
        return f"kind must be one of {KINDS}, got {entry.kind!r}"
    if entry.status not in STATUSES:
        return f"status must be one of {STATUSES}, got {entry.status!r}"
    for name, kind in (("lineage", list), ("gates", list), ("usage", list), ("prompts", list),
                       ("calibration", dict)):
        if not isinstance(getattr(entry, name), kind):
            return f"{name} must be a {kind.__name__}, got {type(getattr(entry, name)).__name__}"
    bad = [r for r in entry.usage if not (isinstance(r, dict) and {"step", "pass_rate", "count"} <= r.keys())]
    if bad:
        return f"usage record {bad[0]!r} lacks step, pass_rate or count"
    return None


def recent_usage(entry: LibraryEntry, window: int) -> list[dict]:
    """The last ``window`` usage records of ``entry`` (all of them when window <= 0)."""
    return entry.usage[-window:] if window > 0 else list(entry.usage)


def recent_pass_rate(entry: LibraryEntry, window: int) -> float | None:
    """Rollout-weighted mean pass rate over the last ``window`` usage records; None when unused."""
    records = [r for r in recent_usage(entry, window) if r.get("count", 0) > 0]
    total = sum(r["count"] for r in records)
    if total == 0:
        return None
    return sum(r["pass_rate"] * r["count"] for r in records) / total


def mastered(entry: LibraryEntry, band_high: float = 0.8, window: int = 5, min_count: int = 16) -> bool:
    """True when the solver has mastered ``entry``: over the last ``window`` usage records it made at
    least ``min_count`` rollouts and its pass rate lies above ``band_high``."""
    if sum(r.get("count", 0) for r in recent_usage(entry, window)) < min_count:
        return False
    p = recent_pass_rate(entry, window)
    return p is not None and p > band_high


def sampling_weights(entries: Sequence[LibraryEntry], window: int = 5, target: float = 0.5, sigma: float = 0.2,
                     floor: float = 0.05) -> list[float]:
    """Probabilities for sampling solver instances from ``entries``, highest where p is near ``target``.

    p is the recent pass rate (``recent_pass_rate``) or, for an environment
    not used yet, its calibration pass rate; w = exp(-((p - target) / sigma)^2),
    at least ``floor``. An environment with neither gets weight 1 (the
    maximum), so new environments are tried. The weights sum to 1.
    """
    raw = []
    for e in entries:
        p = recent_pass_rate(e, window)
        if p is None:
            p = e.calibration.get("p") if isinstance(e.calibration, dict) else None
        raw.append(1.0 if p is None else max(floor, math.exp(-((float(p) - target) / sigma) ** 2)))
    total = sum(raw)
    return [w / total for w in raw] if total > 0 else []


class Library:
    """The environment library stored under ``folder`` (see the module docstring for the layout).

    ``Library(folder)`` starts an empty library there; it refuses a folder
    that already holds one unless ``overwrite`` (which replaces it on the
    first write). ``Library.load(folder)`` reads an existing library;
    ``Library.open(folder)`` does whichever applies. With ``autosave``
    (default) every change is written at once; otherwise ``save()`` writes
    everything.
    """

    def __init__(self, folder: str | os.PathLike, autosave: bool = True, overwrite: bool = False):
        self.folder = Path(folder)
        if not overwrite and (self.folder / INDEX).exists():
            raise LibraryError(f"a library already exists at {self.folder / INDEX}: use Library.load or "
                               f"Library.open to continue it, or overwrite=True to replace it")
        self.autosave = autosave
        self.version = 0
        self._entries: dict[str, LibraryEntry] = {}

    # reading

    @classmethod
    def load(cls, folder: str | os.PathLike, autosave: bool = True) -> "Library":
        """Read the library under ``folder``; LibraryError names the missing or corrupt file."""
        lib = cls(folder, autosave, overwrite=True)
        index_path = lib.folder / INDEX
        index = _read_json(index_path)
        if index.get("format") != FORMAT or not isinstance(index.get("entries"), list) \
                or not isinstance(index.get("version"), int):
            raise LibraryError(f"library file {index_path} is corrupt: expected format {FORMAT} with an integer "
                               f"'version' and a list of 'entries'")
        lib.version = index["version"]
        for item in index["entries"]:
            name = item.get("name") if isinstance(item, dict) else None
            if not isinstance(name, str) or safe_name(name) != name:
                raise LibraryError(f"library file {index_path} is corrupt: bad entry {item!r}")
            meta_path = lib._dir(name) / "meta.json"
            source_path = lib._dir(name) / "source.py"
            meta = _read_json(meta_path)
            try:
                source = source_path.read_text(encoding="utf-8")
            except FileNotFoundError:
                raise LibraryError(f"library file {source_path} is missing") from None
            except (OSError, UnicodeDecodeError) as e:
                raise LibraryError(f"cannot read library file {source_path}: {e}") from None
            try:
                entry = LibraryEntry.from_meta(meta, source)
            except TypeError as e:
                raise LibraryError(f"library file {meta_path} is corrupt: {e}") from None
            problem = _entry_problem(entry)
            if problem:
                raise LibraryError(f"library file {meta_path} is corrupt: {problem}")
            if entry.name != name:
                raise LibraryError(f"library file {meta_path} is corrupt: it names {entry.name!r}, "
                                   f"the index {name!r}")
            lib._entries[name] = entry
        return lib

    @classmethod
    def open(cls, folder: str | os.PathLike, autosave: bool = True) -> "Library":
        """The library under ``folder`` if it has an index, else a new empty one there."""
        if (Path(folder) / INDEX).exists():
            return cls.load(folder, autosave)
        return cls(folder, autosave)

    def get(self, name: str) -> LibraryEntry:
        try:
            return self._entries[name]
        except KeyError:
            raise LibraryError(f"no environment {name!r} in the library at {self.folder}") from None

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def all(self) -> list[LibraryEntry]:
        """Every entry, active and retired, in order of admission."""
        return list(self._entries.values())

    def active(self) -> list[LibraryEntry]:
        """The entries the solver trains on, in order of admission."""
        return [e for e in self._entries.values() if e.status == "active"]

    def recent_pass_rate(self, name: str, window: int) -> float | None:
        return recent_pass_rate(self.get(name), window)

    # changing

    def add(self, entry: LibraryEntry) -> LibraryEntry:
        """Admit ``entry``; its name is made file-system safe and, if taken, suffixed _2, _3, ...

        Returns the stored entry (with its final name).
        """
        problem = _entry_problem(entry)
        if problem:
            raise ValueError(f"library entry {entry.name!r}: {problem}")
        self._admit(entry)
        self._changed(entry)
        return entry

    def record_usage(self, name: str, step: int, pass_rate: float, count: int) -> None:
        """Append one solver step's result for ``name``: ``count`` rollouts with mean pass rate ``pass_rate``."""
        entry = self.get(name)
        entry.usage.append({"step": int(step), "pass_rate": float(pass_rate), "count": int(count)})
        self._changed(entry)

    def set_calibration(self, name: str, calibration: dict) -> None:
        """Record ``name``'s difficulty calibration (solver steps draw instances at its difficulty)."""
        entry = self.get(name)
        entry.calibration = dict(calibration)
        self._changed(entry)

    def retire(self, name: str, step: int) -> LibraryEntry:
        """Take ``name`` out of the active set at ``step``; it keeps its files and history."""
        entry = self.get(name)
        entry.status, entry.retired_step = "retired", int(step)
        self._changed(entry)
        return entry

    def save(self) -> None:
        """Write every entry and then the index."""
        for entry in self._entries.values():
            self._write_entry(entry)
        self._write_index()

    def copy_to(self, folder: str | os.PathLike) -> "Library":
        """Write this library, same version, to ``folder`` (e.g. a checkpoint); returns the copy."""
        other = Library(folder, self.autosave, overwrite=True)
        other.version = self.version
        other._entries = {n: LibraryEntry.from_meta(json.loads(json.dumps(e.meta())), e.source)
                          for n, e in self._entries.items()}
        other.save()
        return other

    def seed_from_builtin(self, seeds: dict[str, os.PathLike], n_prompts: int = 3) -> list[LibraryEntry]:
        """Add the hand-written seed environments (``envs.registry.seed_environments()``) as kind "seed".

        Seeds already present under their name are skipped. Their sample
        prompts (for the novelty gate) are drawn in this process: seeds are
        project code, not model-written. ``n_prompts=0`` skips that.
        """
        added = []
        for name, path in seeds.items():
            if safe_name(name) in self._entries:
                continue
            source = Path(path).read_text(encoding="utf-8")
            prompts = sample_prompts(source, n_prompts, filename=Path(path).name) if n_prompts > 0 else []
            added.append(self._admit(LibraryEntry(name=name, source=source, kind="seed", prompts=prompts,
                                                  origin="builtin")))
        self._persist(added)
        return added

    def seed_from(self, other_folder: str | os.PathLike, include_retired: bool = False) -> list[LibraryEntry]:
        """Add the environments of the library under ``other_folder`` (another run's output).

        Entries keep their source, kind, lineage, gate results, calibration and
        prompts; usage history starts empty and ``origin`` records the folder.
        An entry whose source is already in this library is skipped; a name
        taken by a different environment gets a suffix.
        """
        other = Library.load(other_folder)
        sources = {e.source for e in self._entries.values()}
        added = []
        for e in other.all():
            if e.source in sources or (e.status != "active" and not include_retired):
                continue
            meta = json.loads(json.dumps(e.meta()))
            meta.update(status="active", retired_step=None, usage=[], admitted_step=0,
                        origin=str(Path(other_folder).resolve()))
            added.append(self._admit(LibraryEntry.from_meta(meta, e.source)))
            sources.add(e.source)
        self._persist(added)
        return added

    # storage

    def _dir(self, name: str) -> Path:
        return self.folder / "envs" / name

    def _admit(self, entry: LibraryEntry) -> LibraryEntry:
        base = safe_name(entry.name)
        name, k = base, 1
        while name in self._entries:
            k += 1
            suffix = f"_{k}"
            name = base[:MAX_NAME - len(suffix)] + suffix
        entry.name = name
        self._entries[name] = entry
        return entry

    def _persist(self, entries: Iterable[LibraryEntry]) -> None:
        entries = list(entries)
        if not entries:
            return
        self.version += 1
        if self.autosave:
            for e in entries:
                self._write_entry(e)
            self._write_index()

    def _changed(self, entry: LibraryEntry) -> None:
        self.version += 1
        if self.autosave:
            self._write_entry(entry)
            self._write_index()

    def _write_entry(self, entry: LibraryEntry) -> None:
        folder = self._dir(entry.name)
        _write_atomic(folder / "source.py", entry.source)
        _write_atomic(folder / "meta.json", json.dumps(entry.meta(), indent=1, sort_keys=True) + "\n")

    def _write_index(self) -> None:
        index = {"format": FORMAT, "version": self.version,
                 "entries": [{"name": e.name, "kind": e.kind, "status": e.status,
                              "admitted_step": e.admitted_step, "retired_step": e.retired_step}
                             for e in self._entries.values()]}
        _write_atomic(self.folder / INDEX, json.dumps(index, indent=1) + "\n")


def sample_prompts(source: str, n: int = 3, difficulties: Sequence[int] = (1, 2, 3),
                   filename: str = "<env>") -> list[str]:
    """``n`` instance prompts of a trusted environment (e.g. a seed), drawn in this process with fixed seeds."""
    from envs.protocol import load_environment

    env = load_environment(source, filename=filename)
    out = []
    for i in range(n):
        d = difficulties[i % len(difficulties)]
        out.append(env.prompt(json.loads(json.dumps(env.sample(random.Random(i), d)))))
    return out


__all__ = ["INDEX", "Library", "LibraryEntry", "LibraryError", "mastered", "recent_pass_rate", "recent_usage",
           "safe_name", "sample_prompts", "sampling_weights"]

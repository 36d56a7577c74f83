"""The environment library: on-disk layout, versions, rotation state and sampling weights."""
import json
import os

import pytest

import envs.library as library_module
from envs.library import (INDEX, Library, LibraryEntry, LibraryError, mastered, recent_pass_rate, safe_name,
                          sampling_weights)
from envs.novelty import check_novelty
from envs.errors import UnknownEnvironmentError
from envs.registry import seed_environments

SOURCE = 'class Env:\n    name = "env"\n'


def entry(name="count_primes", **kw):
    kw.setdefault("source", SOURCE.replace('"env"', repr(name)))
    return LibraryEntry(name=name, **kw)


def full_entry():
    return entry("count_primes", lineage=["edit_distance", "knapsack"],
                 gates=[{"gate": "L1", "passed": True, "reason": "loads", "details": {}}],
                 calibration={"difficulty": 3, "p": 0.5, "n_instances": 8, "n_rollouts": 4}, admitted_step=7,
                 prompts=["Count the primes below 40.", "Count the primes below 91."])


def files(folder):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def test_round_trip_keeps_every_field(tmp_path):
    lib = Library(tmp_path / "lib")
    lib.add(full_entry())
    lib.add(entry("other", kind="seed"))
    lib.record_usage("count_primes", 8, 0.25, 16)
    lib.retire("other", 9)
    back = Library.load(tmp_path / "lib")
    assert back.version == lib.version == 4
    assert back.all() == lib.all()
    assert [e.name for e in back.all()] == ["count_primes", "other"]
    got = back.get("count_primes")
    assert got.source == full_entry().source and got.lineage == ["edit_distance", "knapsack"]
    assert got.calibration["p"] == 0.5 and got.gates[0]["gate"] == "L1" and got.admitted_step == 7
    assert got.usage == [{"step": 8, "pass_rate": 0.25, "count": 16}]


def test_layout_and_atomic_writes(tmp_path, monkeypatch):
    folder = tmp_path / "lib"
    lib = Library(folder)
    lib.add(full_entry())
    assert files(folder) == ["envs/count_primes/meta.json", "envs/count_primes/source.py", INDEX]
    assert (folder / "envs/count_primes/source.py").read_text() == full_entry().source
    meta = json.loads((folder / "envs/count_primes/meta.json").read_text())
    assert "source" not in meta and meta["lineage"] == ["edit_distance", "knapsack"]
    index = json.loads((folder / INDEX).read_text())
    assert index["version"] == 1 and index["entries"][0]["name"] == "count_primes"

    def crash(src, dst):
        raise OSError("disk full")

    before = {p: (folder / p).read_bytes() for p in files(folder)}
    monkeypatch.setattr(library_module.os, "replace", crash)
    with pytest.raises(OSError, match="disk full"):
        lib.record_usage("count_primes", 1, 0.5, 4)
    monkeypatch.undo()
    assert {p: (folder / p).read_bytes() for p in files(folder)} == before  # no partial file, no temp left
    assert Library.load(folder).get("count_primes").usage == []


def test_every_change_bumps_the_version(tmp_path):
    lib = Library(tmp_path)
    versions = [lib.version]
    lib.add(entry("a"))
    versions.append(lib.version)
    lib.record_usage("a", 1, 0.5, 8)
    versions.append(lib.version)
    lib.retire("a", 2)
    versions.append(lib.version)
    lib.seed_from_builtin(dict(list(seed_environments().items())[:2]), n_prompts=1)  # one change
    versions.append(lib.version)
    assert versions == [0, 1, 2, 3, 4]
    assert json.loads((tmp_path / INDEX).read_text())["version"] == 4
    lib.save()
    assert Library.load(tmp_path).version == 4


def test_without_autosave_nothing_is_written_until_save(tmp_path):
    lib = Library(tmp_path / "lib", autosave=False)
    lib.add(entry("a"))
    assert not (tmp_path / "lib").exists()
    lib.save()
    assert Library.load(tmp_path / "lib").get("a").source == entry("a").source


def test_name_collisions_and_unsafe_names(tmp_path):
    lib = Library(tmp_path)
    names = [lib.add(entry("count_primes")).name for _ in range(3)]
    assert names == ["count_primes", "count_primes_2", "count_primes_3"]
    assert lib.add(entry("../../Evil Name!")).name == "evil_name"
    assert lib.add(entry("")).name == "env"
    assert len(safe_name("x" * 200)) == 64
    long_names = [lib.add(entry("y" * 100)).name for _ in range(2)]
    assert long_names == ["y" * 64, "y" * 62 + "_2"]
    assert (tmp_path / "envs" / "evil_name" / "source.py").exists()
    assert sorted(p.name for p in (tmp_path / "envs").iterdir()) == sorted(e.name for e in lib.all())
    with pytest.raises(ValueError, match="kind"):
        lib.add(entry("z", kind="other"))


def test_retire_keeps_files_and_history(tmp_path):
    lib = Library(tmp_path)
    lib.add(entry("a"))
    lib.add(entry("b"))
    for step in range(3):
        lib.record_usage("a", step, 0.9, 8)
    lib.retire("a", 3)
    assert [e.name for e in lib.active()] == ["b"] and [e.name for e in lib.all()] == ["a", "b"]
    back = Library.load(tmp_path).get("a")
    assert back.status == "retired" and back.retired_step == 3 and len(back.usage) == 3
    assert (tmp_path / "envs" / "a" / "source.py").exists()
    with pytest.raises(LibraryError, match="no environment 'nope'"):
        lib.record_usage("nope", 1, 0.5, 1)


def test_recent_pass_rate_and_mastery(tmp_path):
    lib = Library(tmp_path)
    lib.add(entry("a"))
    assert lib.recent_pass_rate("a", 3) is None
    for step, p, n in [(1, 0.0, 8), (2, 1.0, 8), (3, 1.0, 8), (4, 0.5, 16)]:
        lib.record_usage("a", step, p, n)
    assert lib.recent_pass_rate("a", 2) == pytest.approx((8 * 1.0 + 16 * 0.5) / 24)
    assert lib.recent_pass_rate("a", 0) == pytest.approx(24 / 40)
    e = lib.get("a")
    assert not mastered(e, band_high=0.8, window=2)
    lib.record_usage("a", 5, 0.95, 16)
    lib.record_usage("a", 6, 0.9, 16)
    assert mastered(e, band_high=0.8, window=2)
    assert not mastered(e, band_high=0.8, window=2, min_count=64)  # too little evidence
    assert recent_pass_rate(entry("fresh"), 5) is None and not mastered(entry("fresh"))


def test_sampling_weights_prefer_pass_rates_near_one_half():
    def used(name, p):
        return entry(name, usage=[{"step": 1, "pass_rate": p, "count": 8}])

    entries = [used("half", 0.5), used("easy", 0.95), used("hard", 0.05), used("mild", 0.65), entry("unseen"),
               entry("calibrated", calibration={"p": 0.3}), used("solved", 1.0)]
    w = dict(zip([e.name for e in entries], sampling_weights(entries, window=5)))
    assert sum(w.values()) == pytest.approx(1.0)
    assert w["half"] == pytest.approx(w["unseen"]) and w["half"] > w["mild"] > w["calibrated"] > w["easy"]
    assert w["easy"] == pytest.approx(w["hard"]) and w["solved"] > 0  # floor: never starved entirely
    assert w["solved"] == pytest.approx(w["half"] * 0.05)
    sharper = dict(zip(w, sampling_weights(entries, window=5, sigma=0.1)))
    assert sharper["mild"] / sharper["half"] < w["mild"] / w["half"]
    assert sampling_weights([]) == []


def test_seed_from_builtin_adds_the_ten_seeds_once(tmp_path):
    lib = Library(tmp_path)
    added = lib.seed_from_builtin(seed_environments())
    assert len(added) == 10 and {e.kind for e in added} == {"seed"}
    assert all(len(e.prompts) == 3 and e.lineage == [] and e.status == "active" for e in added)
    ed = lib.get("edit_distance")
    assert ed.source == seed_environments()["edit_distance"].read_text() and "Levenshtein" in ed.prompts[0]
    assert lib.seed_from_builtin(seed_environments()) == [] and len(lib) == 10
    # The stored prompts feed the novelty gate: each seed is novel against the others, a copy is not.
    for e in lib.active():
        assert check_novelty(e.source, e.prompts, [o for o in lib.active() if o is not e]).passed
    copy = check_novelty(ed.source, ed.prompts, lib.active())
    assert not copy.passed and "'edit_distance'" in copy.reason


def test_seed_from_another_run_keeps_lineage(tmp_path):
    old = Library(tmp_path / "run1" / "library")
    old.seed_from_builtin(dict(list(seed_environments().items())[:1]), n_prompts=0)
    old.add(full_entry())
    old.add(entry("retired_one"))
    old.record_usage("count_primes", 5, 0.5, 8)
    old.retire("retired_one", 6)

    new = Library(tmp_path / "run2" / "library")
    new.seed_from_builtin(dict(list(seed_environments().items())[:1]), n_prompts=0)
    new.add(entry("count_primes", source="class Different:\n    name = 'x'\n"))
    added = new.seed_from(tmp_path / "run1" / "library")
    assert [e.name for e in added] == ["count_primes_2"]  # the shared seed is skipped, the name taken
    got = new.get("count_primes_2")
    assert got.lineage == ["edit_distance", "knapsack"] and got.calibration == full_entry().calibration
    assert got.usage == [] and got.status == "active" and got.kind == "generated"
    assert got.origin == str((tmp_path / "run1" / "library").resolve())
    assert "retired_one" not in new
    assert [e.name for e in new.seed_from(tmp_path / "run1" / "library", include_retired=True)] == ["retired_one"]
    assert Library.load(tmp_path / "run2" / "library").get("count_primes_2").lineage == got.lineage


def test_copy_to_a_checkpoint(tmp_path):
    lib = Library(tmp_path / "run")
    lib.add(full_entry())
    lib.record_usage("count_primes", 1, 0.5, 8)
    ckpt = lib.copy_to(tmp_path / "ckpt" / "library")
    assert ckpt.version == lib.version and ckpt.all() == lib.all()
    lib.record_usage("count_primes", 2, 0.5, 8)  # the checkpoint does not follow later changes
    assert len(Library.load(tmp_path / "ckpt" / "library").get("count_primes").usage) == 1
    lib.copy_to(tmp_path / "ckpt" / "library")  # a checkpoint folder may be written again
    assert len(Library.load(tmp_path / "ckpt" / "library").get("count_primes").usage) == 2


def test_open_and_refusing_to_overwrite(tmp_path):
    assert len(Library.open(tmp_path)) == 0
    Library(tmp_path).add(entry("a"))
    with pytest.raises(LibraryError, match="already exists"):
        Library(tmp_path)
    assert Library.open(tmp_path).get("a").name == "a"


@pytest.mark.parametrize("damage, message", [
    (lambda f: (f / "envs/a/meta.json").write_text("{not json"), "envs/a/meta.json is corrupt"),
    (lambda f: (f / "envs/a/meta.json").write_text('{"name": "b"}'), "envs/a/meta.json is corrupt"),
    (lambda f: (f / "envs/a/meta.json").write_text('{"name": "a", "usage": {}}'), "envs/a/meta.json is corrupt"),
    (lambda f: (f / "envs/a/meta.json").write_text('{"source": "x"}'), "envs/a/meta.json is corrupt"),
    (lambda f: (f / "envs/a/meta.json").write_text("[]"), "envs/a/meta.json is corrupt"),
    (lambda f: os.remove(f / "envs/a/meta.json"), "envs/a/meta.json is missing"),
    (lambda f: os.remove(f / "envs/a/source.py"), "envs/a/source.py is missing"),
    (lambda f: (f / INDEX).write_text(""), f"{INDEX} is corrupt"),
    (lambda f: (f / INDEX).write_text('{"format": 1, "version": 1, "entries": [{"name": "../x"}]}'),
     f"{INDEX} is corrupt"),
    (lambda f: os.remove(f / INDEX), f"{INDEX} is missing"),
], ids=["meta-json", "meta-name", "meta-usage", "meta-no-name", "meta-list", "meta-missing", "source-missing",
        "index-empty", "index-bad-name", "index-missing"])
def test_corrupt_or_missing_files_are_named(tmp_path, damage, message):
    Library(tmp_path).add(entry("a"))
    damage(tmp_path)
    with pytest.raises(LibraryError, match=message.replace(".", r"\.")) as info:
        Library.load(tmp_path)
    assert str(tmp_path) in str(info.value)


def test_seed_sets(tmp_path):
    starters = seed_environments("starters")
    assert len(starters) == 6 and not set(starters) & set(seed_environments("puzzles"))
    assert seed_environments("all") == {**seed_environments("puzzles"), **starters}
    lib = Library(tmp_path)
    added = lib.seed_from_builtin(starters)
    assert {e.name for e in added} == set(starters) and {e.kind for e in added} == {"seed"}
    assert "Which number is larger" in lib.get("larger_number").prompts[0]
    with pytest.raises(UnknownEnvironmentError, match="unknown seed set 'easy': use one of puzzles, starters, all"):
        seed_environments("easy")

"""The contract every registered episode family keeps, and a family that lives only in the tests: adding one is a
folder (tests/families/echo/) and one registry entry, with no shared file touched."""
import inspect
import json

import pytest

from cluster.config.schema import resolve_judges, resolve_policies
from cluster.episodes import registry
from cluster.episodes.protocol import Episode
from cluster.evaluate import compose_config


@pytest.fixture(scope="module")
def default_cfg():
    return compose_config([])


@pytest.mark.parametrize("name", list(registry.FAMILIES))
def test_every_family_keeps_the_contract(name, default_cfg, tmp_path):
    family = registry.FAMILIES[name]
    # its default settings pass its own checks
    if family.config is not None:
        settings = family.settings(default_cfg)
        assert isinstance(settings, family.config)
        assert settings.check(default_cfg, resolve_policies(default_cfg), resolve_judges(default_cfg)) == []
    # one episode class per declared kind, each with its roles declared; state saved is state loaded
    classes = family.episodes()
    assert sorted(e.kind for e in classes) == sorted(family.kinds)
    for episode in classes:
        assert issubclass(episode, Episode) and episode.roles and all(isinstance(r, str) for r in episode.roles)
        assert (episode.save is Episode.save) == (episode.load is Episode.load), f"{episode.kind}: save without load"
    # its report section says nothing about a run directory without rows
    if family.report is not None:
        section = family.report()
        for attr in ("summarize", "format_summary", "write_plots", "html", "key_figures", "step_parts"):
            assert callable(getattr(section, attr)), f"{name}: report section without {attr}"
        assert isinstance(getattr(section, "OWN_PLOTS", ()), tuple)  # optional: plots it shows itself
        assert section.summarize(tmp_path) is None
        assert section.write_plots(tmp_path, tmp_path / "plots") == []
        parts = ["step 1/1", "solver", "reward 0.000", "loss +0.0000"]
        section.step_parts({"step": 0, "reward/mean": 0.0, "loss": 0.0}, parts)
        assert parts == ["step 1/1", "solver", "reward 0.000", "loss +0.0000"]


def test_kinds_are_unique_across_families():
    kinds = registry.kind_names()
    assert len(kinds) == len(set(kinds)) and "task" in kinds


@pytest.fixture
def echo():
    """The echo family registered for one test: the registry and Hydra's schema gain it, then lose it."""
    from cluster.runconfig.store import register_configs
    from tests.families.echo.family import FAMILY

    registry.FAMILIES["echo"] = FAMILY
    register_configs()
    try:
        yield FAMILY
    finally:
        del registry.FAMILIES["echo"]
        register_configs()


def test_a_new_family_is_configured_and_checked_from_its_folder(echo):
    cfg = compose_config(["schedule=[echo]", "episodes.echo.word=hi"])
    assert cfg.episodes.echo.word == "hi" and "echo" in registry.kind_names()
    from cluster.runconfig.checks import validate
    from cluster.config.errors import ConfigError

    validate(cfg)
    with pytest.raises(ConfigError, match=r"episodes.echo.prompts=0: must be at least 1"):
        validate(compose_config(["schedule=[echo]", "episodes.echo.prompts=0"]))
    with pytest.raises(Exception, match="episodes.echo.colour"):  # Hydra stays strict about the family's keys
        compose_config(["episodes.echo.colour=red"])


@pytest.mark.e2e
def test_a_new_family_runs_saves_loads_and_reports(echo, tmp_path):
    from cluster.reports.summary import format_summary, summarize
    from tests.cluster.test_e2e import metrics, train

    run = tmp_path / "echo"
    args = ("schedule=[echo]", "episodes.echo.word=hi", "rollout.sampling.n=2", "+scripted.speaker=['hi','no','hi','hi']", "save_every=1")
    proc = train(run, "steps=1", *args)
    assert "said 3" in proc.stdout  # the family's part of the console's step line
    assert json.loads((run / "checkpoints" / "step_000001" / "episodes" / "echo" / "said.json").read_text()) == 3
    train(run, "steps=2", f"resume={run}", *args)  # load(): the count carries over the resume
    rows = metrics(run)
    assert [r["echo/said"] for r in rows] == [3, 6] and [r["kind"] for r in rows] == ["echo", "echo"]
    assert [json.loads(ln)["said"] for ln in (run / "episodes" / "echo.jsonl").read_text().splitlines()] == [3, 6]
    summary = summarize(run)
    assert summary["sections"]["echo"] == {"steps": 2, "hits": 6}
    assert "echo: 2 steps, 6 words said" in format_summary(summary)


def test_the_echo_family_is_one_folder_outside_the_product():
    from tests.families.echo import family

    assert "tests/families/echo" in inspect.getsourcefile(family).replace("\\", "/")
    assert "echo" not in registry.FAMILIES


def test_family_commands_are_listed_in_the_help_and_dispatched():
    from cluster.cli import main, usage

    names = set(registry.commands())
    assert names == {line.split()[0] for line, _ in registry.command_help()} and "replay" in names
    assert not names & {"train", "eval", "env", "report"}
    assert "  replay RUN " in usage() and "{family_commands}" not in usage()
    assert main(["replay", "/nonexistent-run"]) != 0  # reached the family's command, which names the problem

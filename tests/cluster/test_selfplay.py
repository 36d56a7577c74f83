"""EvoEnv self-play end to end on the real stack (embedded Ray cluster, sandboxed executors, two DeepSpeed
ranks, the tiny model).

The tiny model cannot write an environment, so the scripted run stands its proposals in with a fixed
list of environment files (`selfplay.fixed_proposals`: every gate still runs on them) and its L4 reviewer
with one that always answers yes (`selfplay.review=fixed_yes`). The tiny model solves nothing, so the L5
band is widened to admit p = 0.
"""
import ast
import json
import re
import shutil
from pathlib import Path

import pytest

from envs.registry import seed_environments
from tests.cluster.test_e2e import metrics, train
from tests.conftest import evoforge

pytestmark = pytest.mark.e2e
PROPOSALS = Path(__file__).resolve().parent / "proposals"
GATES = ["parse", "L1", "L2", "L3", "novelty", "L4", "L5"]


def knapsack_copy(folder: Path) -> Path:
    """The knapsack seed with its docstring dropped and identifiers renamed."""
    tree = ast.parse(seed_environments()["knapsack"].read_text())
    tree.body = tree.body[1:]
    text = ast.unparse(tree)
    for old, new in (("values", "worths"), ("weights", "masses"), ("capacity", "limit"), ("Knapsack", "Rucksack")):
        text = re.sub(rf"\b{old}\b", new, text)
    path = folder / "knapsack_copy.py"
    path.write_text(text + "\n")
    return path


def scripted(tmp_path) -> list[str]:
    files = [PROPOSALS / f for f in ("digit_squares.py", "broken_syntax.py", "forbidden_import.py",
                                     "inconsistent.py", "gameable.py")] + [knapsack_copy(tmp_path)]
    return ["selfplay=evoenv", f"selfplay.fixed_proposals=[{','.join(str(f) for f in files)}]",
            "selfplay.review=fixed_yes", "selfplay.band=[0.0,0.9]", "selfplay.generator_every=1",
            "selfplay.proposals=4", "selfplay.samples_per_proposal=2", "selfplay.retire_above=-1",
            "selfplay.calibration_instances=4", "selfplay.calibration_rollouts=2"]


def library_meta(run: Path, name: str) -> dict:
    return json.loads((run / "library" / "envs" / name / "meta.json").read_text())


def test_scripted_proposals_through_all_gates_rotation_and_resume(tmp_path):
    run = tmp_path / "run"
    proc = train(run, "steps=4", "save_every=2", *scripted(tmp_path))
    rows = metrics(run)
    # the end-of-run summary reports the funnel honestly, and the plots are written
    assert re.search(r"proposals\s+16\b", proc.stdout) and re.search(r"admitted\s+1\b", proc.stdout)
    assert "library: 10 -> 11 environments" in proc.stdout
    assert re.search(r"L3\s+2\s+gameable", proc.stdout)  # why proposals were rejected, by first failed gate
    # every proposal is kept with its response and gate reports
    logged = [json.loads(line) for line in (run / "proposals" / "step_000001.jsonl").read_text().splitlines()]
    assert len(logged) == 8 and [p["admitted_as"] for p in logged].count("digit_squares") == 1
    assert logged[2]["gates"][-1]["gate"] == "L1" and "'os'" in logged[2]["gates"][-1]["reason"]
    for name in ("rewards.png", "library.png", "funnel.png"):
        assert (run / "plots" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    page = (run / "report.html").read_text()  # the whole run on one page (tests/cluster/test_report_html.py)
    assert "digit_squares" in page and "knapsack" in page and "Admission funnel" in page
    # the seeds were calibrated at the start (the tiny model solves nothing: p = 0 at the easiest level,
    # inside this run's band [0, 0.9]); a resumed run keeps the records
    seed_cal = library_meta(run, "knapsack")["calibration"]
    assert seed_cal["when"] == "start" and seed_cal["difficulty"] == 1 and seed_cal["p"] == 0.0 and seed_cal["in_band"]
    # the summary counts every calibrated environment: the 10 seeds and digit_squares (its L5 gate)
    assert re.search(r"calibration: 11 library environments, 11 with a pass rate inside the band \(\d+ read from "
                     r"the cache\)", proc.stdout)
    assert [r["episode"] for r in rows] == ["solver", "generator", "solver", "generator"]
    # the executors hold the active library only: judged candidates and retired environments are unloaded
    assert all(r["env/loaded"] == r["selfplay/active"] for r in rows)
    assert json.loads((run / "proposals" / "rejections.json").read_text())["proposals"] == 16

    gen = rows[1]  # 8 proposals: the 6 files, then digit_squares and broken_syntax again
    passed = {g: gen[f"selfplay/gate/{g}/passed"] for g in GATES}
    # parse: all; L1: not the two duplicates, the syntax error, the os import; L2: not the wrong reference;
    # L3: not the any-answer-scores one; novelty: not the knapsack copy; then L4 and L5 admit digit_squares
    assert passed == {"parse": 8, "L1": 4, "L2": 3, "L3": 2, "novelty": 1, "L4": 1, "L5": 1}
    assert gen["selfplay/proposals"] == 8 and gen["selfplay/admitted"] == 1
    assert gen["selfplay/library_size"] == 11 and gen["selfplay/generator_reward"] == pytest.approx(1.0 / 8)

    meta = library_meta(run, "digit_squares")
    assert meta["kind"] == "generated" and meta["admitted_step"] == 1 and 1 <= len(meta["lineage"]) <= 2
    assert [g["gate"] for g in meta["gates"]] == GATES and all(g["passed"] for g in meta["gates"])
    assert meta["calibration"]["difficulty"] == 1 and meta["calibration"]["p"] == 0.0
    assert (run / "library" / "envs" / "digit_squares" / "source.py").read_text() == \
        (PROPOSALS / "digit_squares.py").read_text().rstrip() + "\n"

    # rotation: with retire_above=-1 every used environment counts as mastered, down to min_active
    assert rows[0]["selfplay/retired"] > 0 and rows[2]["selfplay/active"] >= 2
    retired = [json.loads(p.read_text()) for p in (run / "library" / "envs").glob("*/meta.json")]
    retired = [m for m in retired if m["status"] == "retired"]
    assert retired and all(m["usage"] and m["retired_step"] in (0, 2) for m in retired)
    # the second generator step: digit_squares is now in the library, so novelty refuses it
    assert rows[3]["selfplay/gate/novelty/passed"] == 0 and rows[3]["selfplay/admitted"] == 0

    # the CLI shows the library and one environment's history
    listing = evoforge("env", "list", "--run", str(run))
    assert listing.returncode == 0 and re.search(r"digit_squares\s+generated\s+\w+\s+1\s+1", listing.stdout)
    shown = evoforge("env", "show", "digit_squares", "--run", str(run))
    assert shown.returncode == 0 and "gate L5: PASS" in shown.stdout and "class DigitSquares" in shown.stdout
    missing = evoforge("env", "show", "nope", "--run", str(run))
    assert missing.returncode == 2 and "no environment 'nope'" in missing.stderr

    # a library from one run seeds another
    seeded = tmp_path / "seeded"
    train(seeded, "steps=1", "save_every=0", "selfplay=evoenv", f"env.library={run}")
    meta = library_meta(seeded, "digit_squares")
    assert meta["kind"] == "generated" and meta["origin"] == str((run / "library").resolve()) and not meta["usage"]
    assert metrics(seeded)[0]["selfplay/library_size"] == 11

    # the library is part of the checkpoint, and a resumed run brings it back
    ckpt_lib = run / "checkpoints" / "step_000002" / "library"
    assert json.loads((ckpt_lib / "envs" / "digit_squares" / "meta.json").read_text())["kind"] == "generated"
    # a run stopped after its step-3 work (its step-2 checkpoint the newest): its later proposal files,
    # library changes and metrics rows belong to the abandoned rest of the run and are dropped on resume
    part = tmp_path / "part"
    shutil.copytree(run, part, ignore=shutil.ignore_patterns("step_000004"))
    train(part, "steps=4", f"resume={part}", *scripted(tmp_path))
    resumed = metrics(part)
    assert [r["step"] for r in resumed] == [0, 1, 2, 3]
    assert library_meta(part, "digit_squares")["admitted_step"] == 1
    for key in ("selfplay/library_size", "selfplay/retired", "selfplay/gate/novelty/passed"):
        assert [r.get(key) for r in resumed] == [r.get(key) for r in rows], key


@pytest.mark.parametrize("skip", [True, False])
def test_policy_proposals_from_the_tiny_model(tmp_path, skip):
    """The tiny model's own proposals: nothing parses as code; the run still trains the solver and reports.
    Every reward is 0, so with algorithm.skip_zero_signal (default) no update runs and the policy version
    stays; without it every step updates."""
    run = tmp_path / "run"
    # the second run starts every response with the opening of a file (selfplay.response_prefix), measures
    # the generator's gates on fixed held-out prompts before and after, and runs the generator as a policy of
    # its own (one layer) against a separate solver policy
    prefixed = [] if skip else ["selfplay.response_prefix='```python\nimport random\n\n\nclass '",
                                "selfplay.generator_heldout=2", "+policies.generator.model.tiny_layers=1",
                                "+policies.solver={}", "+roles.generator=generator", "+roles.solver=solver",
                                "cluster.num_cpus=8"]
    proc = train(run, "steps=2", "save_every=0", "selfplay=evoenv", "selfplay.generator_every=1",
                 "selfplay.proposals=2", "selfplay.samples_per_proposal=2", "selfplay.max_new_tokens=32",
                 f"algorithm.skip_zero_signal={str(skip).lower()}", *prefixed)
    rows = metrics(run)
    assert [r["episode"] for r in rows] == ["solver", "generator"]
    # without the prefix nothing the tiny model writes is code; with it every response is a python block
    # (of gibberish, which the sandbox refuses to load)
    assert rows[1]["selfplay/proposals"] == 4 and rows[1]["selfplay/gate/parse/passed"] == (0 if skip else 4)
    assert rows[1]["selfplay/gate/L1/passed"] == 0
    logged = [json.loads(line) for line in (run / "proposals" / "step_000001.jsonl").read_text().splitlines()]
    assert all(p["response"].startswith("```python\nimport random") != skip for p in logged)
    if not skip:
        for tag in ("before", "after"):
            held = json.loads((run / f"generator_eval_{tag}.json").read_text())
            assert held["prompts"] == 2 and held["proposals"] == 4 and held["gates"]["parse"] == 4
            assert held["gates"]["L1"] == 0 and held["complete"] == 0
        assert "generator on fixed held-out prompts (4 proposals)" in proc.stdout
        assert not list((run / "proposals").glob("step_-*"))  # held-out proposals are not training's
    assert rows[1]["selfplay/admitted"] == 0 and rows[1]["selfplay/library_size"] == 10
    assert all(r["reward/mean"] == 0 for r in rows)
    if skip:
        assert [r["update/skipped"] for r in rows] == [1.0, 1.0] and [r["policy_version"] for r in rows] == [0, 0]
        assert all(r["weight_sync/bytes"] == 0 for r in rows)
    else:  # each step updates its role's own policy
        assert [r["update/skipped"] for r in rows] == [0.0, 0.0] and [r["policy_version"] for r in rows] == [1, 1]
        assert rows[0]["policy_version/solver"] == 1 and rows[0]["policy_version/generator"] == 0
        assert rows[1]["policy_version/generator"] == 1
        ckpt = run / "checkpoints" / "step_000002" / "policies"
        assert sorted(p.name for p in ckpt.iterdir()) == ["generator", "solver"]


@pytest.mark.parametrize("review", ["policy", "judge"])
def test_semantic_review_by_the_policy_or_a_judge(tmp_path, tiny_model_path, review):
    """L4 with a real reviewer: the tiny model (as the policy, or as a judge in its own worker) answers no
    strict yes/no, so a proposal that passed every earlier gate is refused at L4 with the answer recorded."""
    run = tmp_path / "run"
    train(run, "steps=2", "save_every=0", "selfplay=evoenv", "selfplay.generator_every=1",
          f"selfplay.fixed_proposals=[{PROPOSALS / 'digit_squares.py'}]", f"selfplay.review={review}",
          "selfplay.proposals=1", "selfplay.samples_per_proposal=2",
          *([f"selfplay.judge_model={tiny_model_path}", "cluster.num_cpus=5"] if review == "judge" else []))
    gen = metrics(run)[1]
    assert gen["selfplay/gate/novelty/passed"] == 1 and gen["selfplay/gate/L4/passed"] == 0
    logged = [json.loads(line) for line in (run / "proposals" / "step_000001.jsonl").read_text().splitlines()]
    l4 = logged[0]["gates"][-1]
    assert l4["gate"] == "L4" and not l4["passed"] and f"({review})" in l4["reason"]
    assert "no strict yes/no" in l4["reason"] and "answer" in l4["details"]


def test_environment_failing_during_calibration_is_refused_not_fatal(tmp_path):
    """sample() raising at a difficulty L5 tries: the proposal fails L5 with the error, the run goes on."""
    run = tmp_path / "run"
    train(run, "steps=3", "save_every=0", "selfplay=evoenv", "selfplay.generator_every=1",
          f"selfplay.fixed_proposals=[{PROPOSALS / 'fails_when_harder.py'}]", "selfplay.review=fixed_yes",
          "selfplay.proposals=1", "selfplay.samples_per_proposal=2", "selfplay.difficulties=[4,5]",
          "selfplay.band=[0.0,1.0]")
    rows = metrics(run)
    assert len(rows) == 3 and rows[1]["selfplay/gate/L4/passed"] == 1 and rows[1]["selfplay/gate/L5/passed"] == 0
    logged = json.loads((run / "proposals" / "step_000001.jsonl").read_text().splitlines()[0])
    l5 = logged["gates"][-1]
    assert l5["gate"] == "L5" and "calibration failed" in l5["reason"] and "difficulty too high" in l5["reason"]

"""Long self-play runs do not pile environments up in the executors' sandboxes, nor files in run_dir.

EvoEnv on a real executor fleet (embedded Ray, two EnvExecutor actors with bubblewrap sandboxes), with
scripted proposals and stand-ins for the rollout engine (empty answers: every pass rate is 0, inside the
band) and the tokenizer; no model, no learner. After every step the executors hold exactly the active
library: no candidate id, no retired environment, not the fleet's own task.
"""
import json
import re
from pathlib import Path
from types import SimpleNamespace

import pytest
import ray

from cluster.rundir import checkpoint as ckpt
from cluster.episodes.selfplay import rejections as report
from cluster.config.schema import EnvConfig, ModelConfig, RolloutConfig, SamplingConfig, SandboxConfig
from cluster.episodes.selfplay.config import SelfPlayConfig
from cluster.runtime.env_fleet import EnvFleet
from cluster.runtime.policy_judges import ScriptedJudge
from cluster.episodes.selfplay.library_loop import EvoEnv, Proposal
from envs.registry import seed_environments

PROPOSALS = Path(__file__).resolve().parent / "proposals"


class Solver:
    """Stand-in for the solver role's policy: every answer is empty."""
    sampling = SamplingConfig()

    def encode(self, text, shots=()):
        return [ord(c) % 256 for c in text]

    def generate(self, prompts, sampling, seed=0):
        return {"samples": [[SimpleNamespace(text="") for _ in range(sampling.n)] for _ in prompts], "tokens": 0}


def new_evo(cfg, run, fleet, resume_from=None):
    return EvoEnv(cfg, run, fleet, Solver(), ScriptedJudge("review", "yes"), resume_from)


def fenced(cfg, k):
    files = cfg.selfplay.fixed_proposals
    return f"```python\n{Path(files[k % len(files)]).read_text().rstrip()}\n```"


def knapsack_copy(folder: Path) -> Path:
    """The knapsack seed, renamed: passes L1-L3, refused at novelty."""
    text = seed_environments()["knapsack"].read_text()
    for old, new in (("values", "worths"), ("weights", "masses"), ("Knapsack", "Rucksack")):
        text = re.sub(rf"\b{old}\b", new, text)
    path = folder / "knapsack_copy.py"
    path.write_text(text)
    return path


@pytest.fixture
def setup(ray_local, tmp_path):
    files = [PROPOSALS / "digit_squares.py", knapsack_copy(tmp_path), PROPOSALS / "gameable.py",
             PROPOSALS / "broken_syntax.py"]
    cfg = SimpleNamespace(
        seed=0, model=ModelConfig(), rollout=RolloutConfig(),
        env=EnvConfig(num_executors=2, workers_per_executor=1, cpus_per_executor=0.5, sandbox=SandboxConfig()),
        selfplay=SelfPlayConfig(enabled=True, fixed_proposals=[str(f) for f in files], review="fixed_yes",
                                band=[0.0, 0.9], difficulties=[1], calibration_instances=2,
                                calibration_rollouts=1, gate_seeds=2, gate_difficulties=[1, 2],
                                retire_above=-1.0, min_active=2, keep_proposals=1))
    fleet = EnvFleet(cfg, "PACK")
    yield cfg, fleet, tmp_path / "run"
    for e in fleet.executors:
        ray.kill(e)
    from ray.util.placement_group import remove_placement_group
    remove_placement_group(fleet.pg)


def held(fleet) -> list:
    """Per live executor: the env ids its pool serves, and (sorted, deduplicated) what its workers hold."""
    out = []
    for x in fleet.loaded():
        if x is not None:
            workers = {tuple(w) for w in x["workers"] if w is not None}
            out.append((x["pool"], sorted(workers)))
    return out


def assert_exactly_active(evo, fleet, metrics=None):
    active = sorted(e.name for e in evo.library.active())
    for pool, workers in held(fleet):
        assert pool == active
        assert all(list(w) == active for w in workers), (workers, active)
    if metrics is not None:
        assert metrics["env/loaded"] == len(active) == metrics["selfplay/active"]


def solver_step(evo, step):
    instances = evo.sample(step, [step * 100 + i for i in range(4)])
    return evo.record(step, [i["env"] for i in instances], [1.0] * len(instances))


def generator_step(evo, step):
    proposals = [Proposal(group=k, lineage=[], text=fenced(evo.cfg, k)) for k in range(4)]
    return evo.judge_proposals(step, proposals), proposals


def test_executors_hold_exactly_the_active_library(setup):
    cfg, fleet, run = setup
    run.mkdir()
    evo = new_evo(cfg, run, fleet)
    assert "repeat_digits" not in fleet.sources  # the fleet's own task is not played in self-play
    assert_exactly_active(evo, fleet)
    assert len(evo.library.active()) == 10

    m = solver_step(evo, 0)  # retire_above=-1: everything used retires, down to min_active
    assert m["selfplay/retired"] > 0
    assert_exactly_active(evo, fleet, m)

    m, proposals = generator_step(evo, 1)
    first_failed = [next((g["gate"] for g in p.gates if not g["passed"]), None) for p in proposals]
    assert first_failed == [None, "novelty", "L3", "L1"]  # admitted; refused after L1-L3; at L3; at L1
    assert proposals[0].admitted_as == "digit_squares" and proposals[0].env_id.startswith("candidate_s1_")
    assert proposals[1].env_id.startswith("candidate_s1_")
    assert_exactly_active(evo, fleet, m)  # digit_squares under its library name, no candidate id
    assert "digit_squares" in held(fleet)[0][0]

    for step in (2, 3):  # the next generator step refuses digit_squares at novelty: loaded, then unloaded
        m = solver_step(evo, step) if step == 2 else generator_step(evo, step)[0]
        assert_exactly_active(evo, fleet, m)
    assert m["selfplay/gate/novelty/passed"] == 0 and m["selfplay/gate/L3/passed"] == 2
    retired = [e.name for e in evo.library.all() if e.status == "retired"]
    assert retired and not set(retired) & set(fleet.sources)

    # retention: only the newest generator step's file stays, the counts cover both steps
    assert [p.name for p in report.proposal_files(run / "proposals")] == ["step_000003.jsonl"]
    counts = json.loads((run / "proposals" / report.REJECTIONS_FILE).read_text())
    assert counts["proposals"] == 8 and counts["through_step"] == 3
    reasons = report.rejection_reasons(run)
    assert sum(n for _, n in reasons["novelty"]) == 3 and sum(n for _, n in reasons["L3"]) == 2
    assert sum(n for _, n in reasons["L1"]) == 2

    # a dead executor: unloading tolerates it, and its replacement loads the active library only
    ray.kill(fleet.executors[1])
    evo._retire(evo.library.active()[0].name, 4)
    assert fleet.loaded_counts()[1] is None and evo.fleet_metrics() == {"env/loaded": len(evo.library.active())}
    fleet._replace(1)
    assert_exactly_active(evo, fleet)


def test_resume_restores_the_rejection_counts(setup):
    cfg, fleet, run = setup
    run.mkdir()
    evo = new_evo(cfg, run, fleet)
    generator_step(evo, 1)
    folder = ckpt.checkpoint_dir(run, 2)
    folder.mkdir(parents=True)
    evo.save(folder)
    ckpt.write_driver_state(folder, {"step": 2, "version": 0})
    generator_step(evo, 3)  # then the run dies; it resumes from step 2
    assert json.loads((run / "proposals" / report.REJECTIONS_FILE).read_text())["proposals"] == 8
    cfg.selfplay.keep_proposals = 0
    again = new_evo(cfg, run, fleet, folder)
    assert json.loads((run / "proposals" / report.REJECTIONS_FILE).read_text())["proposals"] == 4
    assert report.proposal_files(run / "proposals") == []  # step 1's file was pruned, step 3's abandoned
    generator_step(again, 3)
    counts = report.read_rejections(run / "proposals")
    assert counts["proposals"] == 8 and counts["through_step"] == 3
    assert_exactly_active(again, fleet)


def test_report_counts_step_files_newer_than_the_counts(tmp_path):
    """A run that died between writing a step file and the counts: the report still sees that step."""
    folder = tmp_path / "proposals"
    failed = {"gates": [{"gate": "parse", "passed": True}, {"gate": "L1", "passed": False, "reason": "no class"}]}
    counts = report.count_rejections(report.new_rejections(), [failed], 1)
    report.write_rejections(folder, counts)
    (folder / "step_000001.jsonl").write_text(json.dumps(failed) + "\n")  # counted already
    (folder / "step_000003.jsonl").write_text(json.dumps(failed) + "\n" + json.dumps(failed) + "\n")
    assert report.rejection_reasons(tmp_path) == {"L1": [("no class", 3)]}
    assert report.read_rejections(folder, before=3)["proposals"] == 1
    assert [p.name for p in report.prune_proposals(folder, 1)] == ["step_000001.jsonl"]
    assert report.rejection_reasons(tmp_path) == {"L1": [("no class", 3)]}


def test_reason_counts_stay_bounded():
    """Model-written code fails in endlessly varied ways: rare reasons merge, common ones keep their counts."""
    def failing(reason):
        return {"gates": [{"gate": "L1", "passed": False, "reason": reason}]}
    counts = report.new_rejections()
    rare = [failing(f"error {chr(65 + i % 26)}{chr(65 + i // 26)}") for i in range(report.MAX_REASONS + 30)]
    report.count_rejections(counts, [failing("no environment class found")] * 5 + rare, 7)
    per_gate = counts["counts"]["L1"]
    assert len(per_gate) == report.MAX_REASONS + 1 and sum(per_gate.values()) == len(rare) + 5
    assert per_gate["no environment class found"] == 5 and per_gate[report.OTHER_REASONS] == 31


def test_prune_drops_abandoned_incomplete_checkpoints(tmp_path):
    for step, complete in ((1, True), (2, False), (3, True), (4, True), (5, False)):
        folder = ckpt.checkpoint_dir(tmp_path, step)
        folder.mkdir(parents=True)
        if complete:
            ckpt.write_driver_state(folder, {"step": step})
    ckpt.prune(tmp_path, keep=2)
    # step 2 never finished and is older than a complete one; step 5 may be a save in progress
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["step_000003", "step_000004",
                                                                            "step_000005"]

"""Propose-then-Critic: the reward accounting by hand, then the episode end to end on the real stack (embedded Ray
on loopback, DeepSpeed over gloo, transformers rollout workers, sandboxed executors, tiny models) with the roles
on one policy (a scripted critic: every pick known in advance) and on two policies (resumed mid-run)."""
import json
import shutil
from types import SimpleNamespace

import pytest

from cluster.episodes.common import scale_advantages
from cluster.episodes.propose_critic.episode import explore, judge_group, loss_weights, merge_views, update_maturity
from trainers.batch import Trajectory

PC = SimpleNamespace(k_min=4, k_max=8, temperature_min=0.7, temperature_max=1.0)


def test_judge_group_by_hand():
    # candidates 0..3 score 0, 1, 0.5, 1; shown as #1 = cand 2, #2 = cand 0, #3 = cand 3, #4 = cand 1
    r = judge_group([0.0, 1.0, 0.5, 1.0], [2, 0, 3, 1], [3, 1, None, 4, 2])
    assert r["chosen"] == [3, 2, None, 1, 0]
    assert r["rewards"] == [1.0, 0.5, 0.0, 1.0, 0.0]
    assert r["hits"] == [True, False, False, True, False]
    assert r["random"] == 0.5 and r["mixed"] is True  # two of four candidates hold the best score
    flat = judge_group([0.25, 0.25], [1, 0], [1, 2])
    assert flat["mixed"] is False and flat["rewards"] == [0.25, 0.25] and flat["random"] == 1.0


def test_a_position_biased_critic_has_a_signal_only_over_several_orders():
    from trainers.advantages import role_advantages

    scores = [1.0, 0.0, 0.0, 0.0]  # candidate 0 is the only right one
    always_first = [1, 1]  # the critic names "1" whatever is shown there
    one = judge_group(scores, [1, 0, 2, 3], always_first)  # one order: candidate 1 is shown first every time
    assert one["rewards"] == [0.0, 0.0]
    assert role_advantages(one["rewards"], ["critic"] * 2, [0, 0]).abs().sum() == 0  # nothing to learn
    views = [judge_group(scores, order, always_first) for order in ([0, 1, 2, 3], [1, 0, 2, 3])]
    group = merge_views(views)  # the same set in two orders, one group
    assert group["chosen"] == [0, 0, 1, 1] and group["rewards"] == [1.0, 1.0, 0.0, 0.0]
    assert group["hits"] == [True, True, False, False] and group["mixed"] and group["random"] == 0.25
    adv = role_advantages(group["rewards"], ["critic"] * 4, [0] * 4)
    assert adv[0] > 0 > adv[2]  # "1" is reinforced where it names the right candidate, discouraged where not


def test_maturity_schedule_and_weights_by_hand():
    assert explore(0.0, PC) == (4, 0.7)
    k, t = explore(0.5, PC)
    assert (k, t) == (6, pytest.approx(0.85))
    assert explore(0.3, PC)[0] == 5 and explore(1.0, PC) == (8, 1.0)  # 5.2 rounds to 5
    assert loss_weights(0.3, "maturity") == (0.3, 0.7) and loss_weights(0.3, "equal") == (1.0, 1.0)
    assert update_maturity(0.2, 0.6, 0.8) == pytest.approx(0.28)
    assert update_maturity(0.2, None, 0.8) == 0.2  # no mixed group: no evidence, no change


def test_scale_advantages_scales_the_token_advantages_too():
    a = Trajectory([1], [2, 3], [0.0, 0.0], advantage=2.0)
    b = Trajectory([1], [2, 3], [0.0, 0.0], advantage=-1.0, token_advantages=[0.5, -1.0])
    scale_advantages([a, b], 0.25)
    assert a.advantage == 0.5 and b.advantage == -0.25 and b.token_advantages == [0.125, -0.25]
    scale_advantages([a], 0.0)
    assert not a.has_signal()  # weight 0: nothing to learn, the update is skipped


# -- end to end ----------------------------------------------------------------------------------------------------
BASE = ["schedule=[propose_critic]", "algorithm.prompts_per_step=4", "episodes.propose_critic.maturity_init=0.5",
        "episodes.propose_critic.critic_samples=4"]


def _records(run):
    return [json.loads(ln) for ln in (run / "episodes" / "propose_critic.jsonl").read_text().splitlines()]


@pytest.mark.e2e
def test_shared_policy_with_a_scripted_critic_accounts_every_reward(tmp_path):
    from tests.cluster.test_e2e import metrics, train

    run = tmp_path / "shared"
    # the critic always answers these four: candidate 2, candidate 1, no number, a number out of range
    proc = train(run, "steps=3", "save_every=3", "seed=2", "+scripted.critic=[2,'1 is right',none,9]",
                 "episodes.propose_critic.heldout_tasks=24", "episodes.propose_critic.heldout_samples=8", *BASE)
    assert "critic " in proc.stdout and "maturity" in proc.stdout  # the console line
    rows, records = metrics(run), _records(run)
    assert [r["kind"] for r in rows] == ["propose_critic"] * 3 and len(records) == 3 * 4
    m = 0.5
    for row in rows:
        step = [r for r in records if r["step"] == row["step"]]
        assert row["maturity/used"] == pytest.approx(m) and row["proposer/k"] == 6  # round(4 + 0.5 * 4)
        assert row["weight/proposer"] == pytest.approx(m) and row["weight/critic"] == pytest.approx(1 - m)
        for r in step:
            assert r["chosen"] == [r["order"][1], r["order"][0], None, None]
            assert r["critic_rewards"] == [r["scores"][r["order"][1]], r["scores"][r["order"][0]], 0.0, 0.0]
            assert r["mixed"] == (max(r["scores"]) > min(r["scores"]))
        mixed = [r for r in step if r["mixed"]]
        assert row["critic/flat_fraction"] == pytest.approx(1 - len(mixed) / len(step))
        if mixed:  # the critic trains on the mixed groups only, rewarded with the picked candidates' scores
            rewards = [x for r in mixed for x in r["critic_rewards"]]
            assert row["critic/reward/mean"] == pytest.approx(sum(rewards) / len(rewards))
            hits = [r["scores"][c] == max(r["scores"]) for r in mixed for c in r["chosen"][:2]]
            assert row["critic/accuracy"] == pytest.approx(sum(hits) / (4 * len(mixed)))
            m = 0.8 * m + 0.2 * row["critic/accuracy"]
        else:
            assert row["critic/update/skipped"] == 1.0 and "critic/accuracy" not in row
        assert row["maturity"] == pytest.approx(m)
        assert row["critic/no_pick_fraction"] == 0.5
    assert any(r["mixed"] for r in records)
    # held-out sets: the greedy pick is response (set index mod 4); the 8 samples of a set cycle all four twice
    sets = json.loads((run / "checkpoints" / "step_000003" / "episodes" / "propose_critic" / "heldout.json")
                      .read_text())
    assert sets and all(max(s["scores"]) > min(s["scores"]) for s in sets)  # mixed sets only
    best = [[s["scores"][c] == max(s["scores"]) for c in s["order"]] for s in sets]  # by shown position
    greedy = [b[1] if i % 4 == 0 else b[0] if i % 4 == 1 else False for i, b in enumerate(best)]
    rates = [(b[1] + b[0]) / 4 for b in best]
    for tag in ("before", "after"):
        e = json.loads((run / f"critic_eval_{tag}.json").read_text())
        assert e["sets"] == len(sets) and e["hits"] == [float(g) for g in greedy]
        assert e["sampled"]["rates"] == pytest.approx(rates)
        assert e["sampled"]["accuracy"] == pytest.approx(sum(rates) / len(rates))
        assert e["no_pick"] == pytest.approx(sum(i % 4 >= 2 for i in range(len(sets))) / len(sets))
        # the baselines per set, on the same sets: a random pick's chance; majority vote's hit
        assert e["random"] == pytest.approx([sum(b) / 4 for b in best])
        from envs.critique import majority_index
        assert e["majority_hits"] == [float(s["scores"][majority_index(s["candidates"])] == max(s["scores"]))
                                      for s in sets]
        assert e["majority_baseline"] == pytest.approx(sum(e["majority_hits"]) / len(sets))
        assert e["picked_number"] == [sum(i % 4 == 1 for i in range(len(sets))),
                                      sum(i % 4 == 0 for i in range(len(sets))), 0, 0]  # "2" and "1", greedy
    change = e["sampled"]["change"]  # the same scripted picks: no change, an interval of zero width
    assert change["delta"] == 0 and change["delta_ci"] == [0, 0] and not change["significant"]
    assert "sampled picks (8 per set" in proc.stdout
    last = rows[-1]  # one policy for both roles: the critic's update comes after the proposer's, on the same counter
    assert last["critic/policy_version"] - last["proposer/policy_version"] == 1 - last["critic/update/skipped"]


@pytest.mark.e2e
def test_two_policies_and_resume_reproduce_the_uninterrupted_run(tmp_path):
    from tests.cluster.test_e2e import metrics, train

    two = ["+policies.proposer={}", "+policies.critic.model.tiny_layers=1", "+roles.proposer=proposer",
           "+roles.critic=critic", "cluster.num_cpus=8", "episodes.propose_critic.critic_orders=2", *BASE]
    full, part = tmp_path / "full", tmp_path / "part"
    train(full, "steps=4", "save_every=3", "seed=4", *two)
    rows = metrics(full)
    assert rows[-1]["policy_version/critic"] >= 1 and rows[-1]["policy_version/proposer"] >= 1
    state = json.loads((full / "checkpoints" / "step_000003" / "episodes" / "propose_critic" / "state.json")
                       .read_text())
    assert state["maturity"] == pytest.approx(rows[2]["maturity"])
    shutil.copytree(full, part, ignore=shutil.ignore_patterns("step_000004"))
    (part / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[:3]))
    train(part, "steps=4", "save_every=3", "seed=4", f"resume={part}", *two)
    b = metrics(part)
    assert [r["step"] for r in b] == list(range(4))
    records = _records(full)
    assert len(_records(part)) == len(records) == 32  # the records past the checkpoint were replaced
    for step in range(4):  # critic_orders=2: each of the 4 candidate sets shown twice, its scores the same
        shown = [r for r in records if r["step"] == step]
        assert sorted(r["group"] for r in shown) == [0, 0, 1, 1, 2, 2, 3, 3]
        assert all(a["scores"] == b["scores"] for a in shown for b in shown if a["group"] == b["group"])
    for key in ("proposer/reward/mean", "critic/reward/mean", "maturity", "proposer/loss", "critic/loss",
                "policy_version/proposer", "policy_version/critic"):
        assert [r.get(key) for r in rows[3:]] == pytest.approx([r.get(key) for r in b[3:]], abs=1e-6), key

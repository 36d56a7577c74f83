"""`delta_rubric`: a judge that learns to check. One model (or two) plays Disagreement Planner and Checklist Verifier.

    pairs      <- built once: per task, the policy's answers scored by the environment; a correct one (or the
                  environment's reference) vs a wrong one -> train pairs, and held-out pairs on other tasks
    per step   draw pairs_per_step train pairs, each shown as (A, B) in a random order (both_orders: in both)
    checklists <- the planner's samples per pair                   (envs/rubric.py planner_prompt)
    verdicts   <- the verifier's M samples per checklist: its checks, then "\nPreference:" written for it (not
                  trained on) and the A or B it writes next (verdict_prefix; "": its own verdict line)
    rewards    verifier: 1 if its preference is the label, plus format_bonus if it parses
               planner: the mean accuracy of the M verdicts on its checklist
    advantages group-relative per role (planner: per shown pair, verifier: per checklist, or with both_orders
               per pair over its two orders)

Held-out (heldout_tasks > 0), before the first step and after the last: every held-out pair in both orders,
greedy planner then greedy verifier -> pairwise accuracy, order consistency (the same response preferred in
both orders); the baselines on the same pairs: the direct judge (same model, no checklist) and, with
reward_model_epochs, a scalar reward model trained on the train pairs (Bradley-Terry; saved to
run_dir/reward_model/, a `scalar` judge for the judge pool) -> run_dir/judge_eval_<tag>.json.
"""
from __future__ import annotations

import json
import random
import time
from dataclasses import replace
from pathlib import Path

from actors.judge import parse_preference
from cluster.config.seeds import seed_range, step_order, step_sampling, task_set
from cluster.episodes.protocol import Episode, EpisodeResult, RoleUpdate
from cluster.episodes.common import response_ids, reward_metrics, to_trajectories
from cluster.evaluation.stats import paired_delta, wilson
from envs.rubric import direct_prompt, parse_letter, planner_prompt, verifier_prompt
from trainers.batch import Trajectory

TRAIN = task_set(1)  # the train pairs' tasks; also their sampling seed
HELDOUT = task_set(2)  # the held-out pairs' tasks; also their sampling seed
VERIFIER_OFFSET = 700_001  # the verifier's sampling seed: the step's plus this


def build_pairs(instances: list[dict], answers: list[list[str]], scores: list[list[float]]) -> list[dict]:
    """Per task: chosen = its first fully correct answer (else the environment's reference), rejected = its first
    wrong non-empty answer; a task with no wrong answer gives no pair."""
    pairs = []
    for inst, texts, marks in zip(instances, answers, scores):
        wrong = [t for t, s in zip(texts, marks) if s < 1.0 and t.strip()]
        if not wrong:
            continue
        right = [t for t, s in zip(texts, marks) if s >= 1.0]
        pairs.append({"question": inst["prompt"], "chosen": right[0] if right else inst["reference"],
                      "rejected": wrong[0], "chosen_source": "policy" if right else "reference"})
    return pairs


def shown(pair: dict, flip: bool) -> tuple[str, str, str]:
    """(A, B, label): the chosen response is B when flipped."""
    if flip:
        return pair["rejected"], pair["chosen"], "B"
    return pair["chosen"], pair["rejected"], "A"


def verifier_reward(verdict: str | None, label: str, format_bonus: float) -> float:
    return float(verdict == label) + (format_bonus if verdict is not None else 0.0)


def judgement_metrics(verdicts: list[str | None], labels: list[str]) -> dict:
    """Pairwise accuracy, parse rate and how often A is preferred (position bias) over judgements."""
    n = max(len(verdicts), 1)
    return {"accuracy": sum(v == lab for v, lab in zip(verdicts, labels)) / n,
            "parsed": sum(v is not None for v in verdicts) / n,
            "prefers_a": sum(v == "A" for v in verdicts) / n}


def both_orders(verdicts_ab: list[str | None], verdicts_ba: list[str | None]) -> dict:
    """Held-out pairs judged as (chosen, rejected) and as (rejected, chosen): per-judgement hits (2 per pair),
    accuracy with its interval, order consistency (the same response preferred both times)."""
    hits = [float(v == "A") for v in verdicts_ab] + [float(v == "B") for v in verdicts_ba]
    consistent = [a is not None and b is not None and a != b for a, b in zip(verdicts_ab, verdicts_ba)]
    n = len(hits)
    return {"accuracy": sum(hits) / max(n, 1), "accuracy_ci": list(wilson(sum(hits), n)), "hits": hits,
            "order_consistency": sum(consistent) / max(len(consistent), 1),
            "parsed": sum(v is not None for v in verdicts_ab + verdicts_ba) / max(n, 1)}


class DeltaRubricEpisode(Episode):
    kind, roles, label = "delta_rubric", ("planner", "verifier"), "delta_rubric"

    def __init__(self, ctx):
        super().__init__(ctx)
        self.dc = ctx.cfg.episodes.delta_rubric
        self.pairs: dict[str, list[dict]] | None = None  # train, heldout

    # -- pairs ------------------------------------------------------------------------------------------------------
    def _make_pairs(self, ctx, base: int, tasks: int) -> list[dict]:
        policy, cfg, dc = ctx.policy("planner"), ctx.cfg, self.dc
        instances = ctx.env.sample(seed_range(base, tasks), cfg.env.difficulty)
        shots = ctx.shots(None, cfg.env.difficulty)
        prompts = [policy.encode(i["prompt"], shots) for i in instances]
        out = policy.generate(prompts, replace(policy.sampling, n=dc.responses, temperature=dc.temperature), seed=base)
        answers = [[s.text for s in g] for g in out["samples"]]
        flat, _ = ctx.env.score([{"data": i["data"], "response": t} for i, g in zip(instances, answers) for t in g])
        k = dc.responses
        return build_pairs(instances, answers, [flat[j * k:(j + 1) * k] for j in range(len(instances))])

    def start(self, step: int) -> None:
        super().start(step)
        ctx, dc = self.ctx, self.dc
        if self.pairs is None:
            t0 = time.time()
            self.pairs = {"train": self._make_pairs(ctx, TRAIN, dc.train_tasks),
                          "heldout": self._make_pairs(ctx, HELDOUT, dc.heldout_tasks)
                          if dc.heldout_tasks else []}
            if not self.pairs["train"]:
                from cluster.config.errors import ConfigError

                raise ConfigError(f"delta_rubric: none of the {dc.train_tasks} train tasks gave a pair (the policy "
                                  f"answered every one correctly in all {dc.responses} tries): use a harder "
                                  "env.difficulty or more episodes.delta_rubric.responses")
            n = {k: len(v) for k, v in self.pairs.items()}
            print(f"evoforge: delta_rubric: {n['train']} train pairs from {dc.train_tasks} tasks, {n['heldout']} "
                  f"held-out pairs from {dc.heldout_tasks} ({time.time() - t0:.0f} s)", flush=True)
        if self.pairs["heldout"] and step == 0:
            self.measure("before")

    def finish(self) -> None:
        if self.pairs and self.pairs["heldout"]:
            self.measure("after")

    # -- a step -------------------------------------------------------------------------------------------------------
    def run(self, step: int, ctx) -> EpisodeResult:
        planner, verifier, cfg, dc = ctx.policy("planner"), ctx.policy("verifier"), ctx.cfg, self.dc
        rng = random.Random(step_order(cfg.seed, step))  # which pairs and which order
        train = self.pairs["train"]
        count = dc.pairs_per_step or cfg.algorithm.prompts_per_step
        if dc.both_orders:  # each pair in both orders; the verifier's group is the pair (group_of below)
            drawn = [(pair, flip) for pair in (train[rng.randrange(len(train))] for _ in range(count))
                     for flip in (False, True)]
        else:
            drawn = [(train[rng.randrange(len(train))], rng.random() < 0.5) for _ in range(count)]
        shown_pairs = [(p["question"], *shown(p, flip)) for p, flip in drawn]
        t0 = time.perf_counter()
        plan_prompts = [planner.encode(planner_prompt(q, a, b, dc.max_checks, dc.max_response_chars))
                        for q, a, b, _ in shown_pairs]
        pout = planner.generate(plan_prompts, self._sampling(planner, dc.checklists, dc.planner_max_new_tokens),
                                seed=step_sampling(cfg.seed, step))
        checklists = [(i, s.text) for i, g in enumerate(pout["samples"]) for s in g]
        ver_prompts = [verifier.encode(verifier_prompt(*shown_pairs[i][:3], c, dc.max_response_chars))
                       for i, c in checklists]
        answers, vout = self._verify(verifier, ver_prompts, dc.verifications, dc.temperature,
                                     seed=step_sampling(cfg.seed, step, VERIFIER_OFFSET))
        t1 = time.perf_counter()
        verdicts = [[a["verdict"] for a in g] for g in answers]
        labels = [shown_pairs[i][3] for i, _ in checklists]
        plan_rewards = [sum(v == lab for v in vs) / len(vs) for vs, lab in zip(verdicts, labels)]
        planned = to_trajectories(plan_prompts, pout["samples"], pout["version"], "planner", self.kind, plan_rewards)
        verified = [Trajectory(prompt_ids=ver_prompts[j], response_ids=a["ids"], behaviour_logprobs=a["logprobs"],
                               loss_mask=a["mask"], group_id=self._group_of(j, checklists), role="verifier",
                               episode=self.kind,
                               policy_version=vout["version"],
                               reward=verifier_reward(a["verdict"], lab, dc.format_bonus))
                    for j, (g, lab) in enumerate(zip(answers, labels)) for a in g]
        ctx.set_advantages("planner", planned)
        ctx.set_advantages("verifier", verified)
        self.record(step, [
            {"pair": checklists[j][0], "label": lab, "checklist": checklists[j][1],
             "planner_reward": plan_rewards[j], "verdicts": vs,
             "verifier_rewards": [verifier_reward(v, lab, dc.format_bonus) for v in vs],
             "responses": [a["text"] for a in answers[j]]}
            for j, (vs, lab) in enumerate(zip(verdicts, labels))])
        flat_verdicts = [v for vs in verdicts for v in vs]
        flat_labels = [lab for vs, lab in zip(verdicts, labels) for _ in vs]
        metrics = {**{f"planner/{k}": v for k, v in reward_metrics(planned).items()},
                   **{f"verifier/{k}": v for k, v in reward_metrics(verified).items()},
                   **{f"verifier/{k}": v for k, v in judgement_metrics(flat_verdicts, flat_labels).items()},
                   "timing/rollout": t1 - t0}
        return EpisodeResult({
            "planner": RoleUpdate(planned, "grpo", dc.temperature, recompute_old=pout["off_policy"]),
            "verifier": RoleUpdate(verified, "grpo", dc.temperature, recompute_old=vout["off_policy"]),
        }, metrics)

    def _group_of(self, j: int, checklists: list[tuple[int, str]]) -> int:
        """The verifier's GRPO group of checklist j: the checklist itself, or with both_orders the drawn pair (its
        two shown orders are consecutive)."""
        return checklists[j][0] // 2 if self.dc.both_orders else j

    def _verify(self, verifier, prompts: list[list[int]], n: int, temperature: float, seed: int):
        """The verifier's n answers per prompt as [{"ids", "logprobs", "mask", "text", "verdict"}] per prompt, and
        {"version", "off_policy"}. With verdict_prefix, each answer's checks (without a final end-of-text token) are
        followed by the prefix (mask 0: written for the model, not trained) and a verdict of at most
        verdict_max_new_tokens tokens sampled from there; the ids stay exactly as generated."""
        dc = self.dc
        sampling = replace(verifier.sampling, n=n, temperature=temperature, max_new_tokens=dc.verifier_max_new_tokens,
                           cuts_fraction=0.0)
        out = verifier.generate(prompts, sampling, seed=seed)
        if not dc.verdict_prefix:
            return [[{"ids": s.response_ids, "logprobs": s.logprobs, "mask": None, "text": s.text,
                      "verdict": parse_preference(s.text)} for s in g] for g in out["samples"]], out
        eos, prefix = verifier.tokenizer.eos_token_id, response_ids(verifier.tokenizer, dc.verdict_prefix)
        bodies = []
        for i, g in enumerate(out["samples"]):
            for s in g:
                ids = s.response_ids[:-1] if s.response_ids and s.response_ids[-1] == eos else s.response_ids
                bodies.append((i, ids, s))
        verdicts = verifier.generate([prompts[i] + ids + prefix for i, ids, _ in bodies],
                                     replace(sampling, n=1, max_new_tokens=dc.verdict_max_new_tokens), seed=seed + 1)
        flat = [{"ids": ids + prefix + v[0].response_ids,
                 "logprobs": s.logprobs[:len(ids)] + [0.0] * len(prefix) + v[0].logprobs,
                 "mask": [1] * len(ids) + [0] * len(prefix) + [1] * len(v[0].response_ids),
                 "text": s.text + dc.verdict_prefix + v[0].text, "verdict": parse_letter(v[0].text)}
                for (_, ids, s), v in zip(bodies, verdicts["samples"])]
        return [flat[i * n:(i + 1) * n] for i in range(len(prompts))], \
            {"version": out["version"], "off_policy": out["off_policy"] or verdicts["off_policy"]}

    def _sampling(self, policy, n: int, max_new_tokens: int):
        return replace(policy.sampling, n=n, temperature=self.dc.temperature, max_new_tokens=max_new_tokens,
                       cuts_fraction=0.0)

    # -- held-out -----------------------------------------------------------------------------------------------------
    def _greedy(self, policy, max_new_tokens: int):
        return replace(policy.sampling, n=1, temperature=0.0, max_new_tokens=max_new_tokens, cuts_fraction=0.0)

    def _judge_rubric(self, orders: list[tuple[str, str, str]]) -> list[str | None]:
        planner, verifier, dc = self.ctx.policy("planner"), self.ctx.policy("verifier"), self.dc
        prompts = [planner.encode(planner_prompt(q, a, b, dc.max_checks, dc.max_response_chars)) for q, a, b in orders]
        plans = planner.generate(prompts, self._greedy(planner, dc.planner_max_new_tokens), seed=HELDOUT)
        prompts = [verifier.encode(verifier_prompt(q, a, b, g[0].text, dc.max_response_chars))
                   for (q, a, b), g in zip(orders, plans["samples"])]
        answers, _ = self._verify(verifier, prompts, 1, 0.0, seed=HELDOUT)
        return [g[0]["verdict"] for g in answers]

    def _judge_direct(self, orders: list[tuple[str, str, str]]) -> list[str | None]:
        """The same model asked for the verdict directly (after the verdict prefix, when one is set)."""
        verifier, dc = self.ctx.policy("verifier"), self.dc
        prefix = response_ids(verifier.tokenizer, dc.verdict_prefix.lstrip("\n")) if dc.verdict_prefix else []
        prompts = [verifier.encode(direct_prompt(q, a, b, dc.max_response_chars)) + prefix for q, a, b in orders]
        tokens = dc.verdict_max_new_tokens if prefix else dc.verifier_max_new_tokens
        out = verifier.generate(prompts, self._greedy(verifier, tokens), seed=HELDOUT)
        return [parse_letter(g[0].text) if prefix else parse_preference(g[0].text) for g in out["samples"]]

    def measure(self, tag: str) -> dict:
        pairs, run_dir, t0 = self.pairs["heldout"], self.ctx.run_dir, time.time()
        ab = [(p["question"], p["chosen"], p["rejected"]) for p in pairs]
        ba = [(p["question"], p["rejected"], p["chosen"]) for p in pairs]
        verdicts = self._judge_rubric(ab + ba)
        methods = {"delta_rubric": both_orders(verdicts[:len(pairs)], verdicts[len(pairs):])}
        if self.dc.direct_baseline:
            verdicts = self._judge_direct(ab + ba)
            methods["direct"] = both_orders(verdicts[:len(pairs)], verdicts[len(pairs):])
        before = run_dir / "judge_eval_before.json"
        if tag == "before" and self.dc.reward_model_epochs:
            methods["scalar_rm"] = self._reward_model()
        elif tag == "after" and before.is_file():
            earlier = json.loads(before.read_text())
            if "scalar_rm" in earlier["methods"]:
                methods["scalar_rm"] = earlier["methods"]["scalar_rm"]  # trained once; the policy's training
            for name, m in methods.items():                            # does not change it
                old = earlier["methods"].get(name)
                if old and len(old["hits"]) == len(m["hits"]) and name != "scalar_rm":
                    m["change"] = paired_delta(old["hits"], m["hits"])
        row = {"tag": tag, "pairs": len(pairs), "methods": methods}
        (run_dir / f"judge_eval_{tag}.json").write_text(json.dumps(row, indent=1))
        text = ", ".join(f"{name} {m['accuracy']:.3f} [{m['accuracy_ci'][0]:.3f}, {m['accuracy_ci'][1]:.3f}]"
                         for name, m in methods.items())
        print(f"evoforge: judge held-out {tag} ({len(pairs)} pairs, both orders): {text} ({time.time() - t0:.0f} s)",
              flush=True)
        return row

    def _reward_model(self) -> dict:
        """The scalar baseline: a Bradley-Terry reward model on the train pairs, run as a Ray task."""
        import ray

        policy, dc = self.ctx.policy("verifier"), self.dc
        train = [(p["question"], p["chosen"], p["rejected"]) for p in self.pairs["train"]]
        held = [(p["question"], p["chosen"], p["rejected"]) for p in self.pairs["heldout"]]
        out = self.ctx.run_dir / "reward_model"
        task = ray.remote(num_cpus=0)(_train_reward_model)
        result = ray.get(task.remote(policy.model_path, policy.pcfg.model.chat_template, train, held,
                                     dc.reward_model_epochs, dc.reward_model_lr, self.ctx.cfg.seed, str(out)))
        n = len(result["hits"])
        return {"accuracy": sum(result["hits"]) / max(n, 1), "accuracy_ci": list(wilson(sum(result["hits"]), n)),
                "hits": result["hits"], "order_consistency": 1.0, "parsed": 1.0, "train_loss": result["losses"],
                "folder": str(out)}

    def save(self, folder: Path) -> None:
        if self.pairs is not None:
            out = self.state_dir(folder)
            out.mkdir(parents=True, exist_ok=True)
            (out / "pairs.json").write_text(json.dumps(self.pairs))

    def load(self, folder: Path) -> None:
        saved = self.state_dir(folder) / "pairs.json"
        if saved.is_file():
            self.pairs = json.loads(saved.read_text())


def _train_reward_model(model_path, chat_template, train, held, epochs, lr, seed, out) -> dict:
    from trainers.reward_model import RewardModelTrainer

    import os

    # a Ray task gets one torch thread unless told: this one trains alone while the episode waits, on every core
    trainer = RewardModelTrainer(model_path, chat_template, lr=lr, seed=seed, threads=os.cpu_count() or 1)
    losses = trainer.train(train, epochs)
    hits = trainer.accuracy(held)
    trainer.save(Path(out))
    return {"losses": losses, "hits": hits}


"""`challenger` (R-Zero): a challenger writes the questions, a solver's agreement with itself labels them.

    examples   <- the environment's instances (seeds no step draws; new ones each step)
    questions  <- the challenger's samples per prompt (its GRPO group)           envs/challenge.py
    answers    <- the solver's m samples per question
    label, p   <- the majority answer and its share of the m answers
    rewards    challenger: min(p, 1 - p) - repetition penalty (near-duplicate questions of the batch); an empty
                 question scores 0
               solver: 1 if an answer is the pseudo-label, on questions with p in band only
    checker    where one computes a question's true answer: pseudo-label accuracy (a metric, never a reward)

Every question (text, answers' labels, p, rewards) goes to run_dir/episodes/challenger.jsonl.
"""
from __future__ import annotations

import time
from dataclasses import replace

from cluster.config.seeds import example_instances, step_sampling, task_set
from cluster.episodes.protocol import Episode, EpisodeResult, RoleUpdate
from cluster.episodes.common import reward_metrics, to_trajectories
from envs.challenge import (
    CHECKERS,
    challenger_prompt,
    pseudo_label,
    question_text,
    repetition_penalties,
    uncertainty_reward,
)
from envs.critique import answer_key

EXAMPLES = task_set(3)  # the instances shown as examples of the task family
SOLVER_OFFSET = 300_007  # the solver's sampling seed: the step's plus this


def challenger_rewards(questions: list[str], ps: list[float], threshold: float, weight: float) -> tuple[list, list]:
    """(rewards, penalties): min(p, 1 - p) minus the repetition penalty among the non-empty questions; 0 for an
    empty question."""
    kept = [i for i, q in enumerate(questions) if q]
    penalties = [0.0] * len(questions)
    for i, pen in zip(kept, repetition_penalties([questions[i] for i in kept], threshold, weight) if kept else []):
        penalties[i] = pen
    rewards = [uncertainty_reward(p) - pen if q else 0.0 for q, p, pen in zip(questions, ps, penalties)]
    return rewards, penalties


def in_band(p: float, band) -> bool:
    return band[0] <= p <= band[1]


class ChallengerEpisode(Episode):
    kind, roles, label = "challenger", ("challenger", "solver"), "challenger"

    def __init__(self, ctx):
        super().__init__(ctx)
        self.cc = ctx.cfg.episodes.challenger

    def run(self, step: int, ctx) -> EpisodeResult:
        challenger, solver, cfg, cc = ctx.policy("challenger"), ctx.policy("solver"), ctx.cfg, self.cc
        t0 = time.perf_counter()
        count = cfg.algorithm.prompts_per_step
        seeds = example_instances(EXAMPLES, step, count, cc.examples)
        examples = [i["prompt"] for i in ctx.env.sample(seeds, cfg.env.difficulty)] if cc.examples else []
        prompts = [challenger.encode(challenger_prompt(examples[g * cc.examples:(g + 1) * cc.examples], cc.family))
                   for g in range(count)]
        sampling = replace(challenger.sampling, max_new_tokens=cc.max_new_tokens)
        out = challenger.generate(prompts, sampling, seed=step_sampling(cfg.seed, step))
        questions = [question_text(s.text, cc.max_question_chars) for g in out["samples"] for s in g]
        asked = [i for i, q in enumerate(questions) if q]
        shots = ctx.shots(None, cfg.env.difficulty)
        solver_prompts = [solver.encode(cc.solver_template.format(question=questions[i]), shots) for i in asked]
        t1 = time.perf_counter()
        sout = solver.generate(solver_prompts, replace(solver.sampling, n=cc.answers),
                               seed=step_sampling(cfg.seed, step, SOLVER_OFFSET)) if asked else {
            "samples": [], "version": 0, "off_policy": False}
        t2 = time.perf_counter()
        labels, ps = [None] * len(questions), [0.0] * len(questions)
        for i, group in zip(asked, sout["samples"]):
            labels[i], ps[i] = pseudo_label([s.text for s in group])
        rewards, penalties = challenger_rewards(questions, ps, cc.repetition_threshold, cc.repetition_weight)
        written = to_trajectories(prompts, out["samples"], out["version"], "challenger", self.kind, rewards)
        ctx.set_advantages("challenger", written)
        banded = [j for j, i in enumerate(asked) if labels[i] is not None and in_band(ps[i], cc.band)]
        answered = to_trajectories([solver_prompts[j] for j in banded], [sout["samples"][j] for j in banded],
                                   sout["version"], "solver", self.kind,
                                   [float(answer_key(s.text) == labels[asked[j]]) for j in banded
                                    for s in sout["samples"][j]])
        for t in answered:
            t.group_id = banded[t.group_id]
        ctx.set_advantages("solver", answered)
        metrics = self._metrics(questions, labels, ps, penalties, asked, banded, written, answered)
        metrics.update({"timing/challenge": t1 - t0, "timing/answer": t2 - t1})
        self._record(step, questions, labels, ps, rewards, penalties, asked, sout)
        return EpisodeResult({
            "challenger": RoleUpdate(written, "grpo", max(sampling.temperature, 1e-6), recompute_old=out["off_policy"]),
            "solver": RoleUpdate(answered, "grpo", max(solver.sampling.temperature, 1e-6),
                                 recompute_old=sout["off_policy"]),
        }, metrics)

    def _metrics(self, questions, labels, ps, penalties, asked, banded, written, answered) -> dict:
        n = len(questions)
        out = {f"challenger/{k}": v for k, v in reward_metrics(written).items()}
        out.update({"challenger/empty_fraction": 1.0 - len(asked) / max(n, 1),
                    "challenger/agreement": sum(ps[i] for i in asked) / max(len(asked), 1),
                    "challenger/uncertainty": sum(uncertainty_reward(ps[i]) for i in asked) / max(len(asked), 1),
                    "challenger/repetition_penalty": sum(penalties) / max(n, 1),
                    "challenger/duplicate_fraction": sum(p > 0 for p in penalties) / max(n, 1),
                    "solver/in_band_fraction": len(banded) / max(len(asked), 1)})
        if answered:
            out.update({f"solver/{k}": v for k, v in reward_metrics(answered).items()})
        check = CHECKERS[self.cc.checker]
        truths = [(labels[i], check(questions[i])) for i in asked]
        checked = [(label, truth) for label, truth in truths if truth is not None]
        if checked:
            out["pseudo_label/accuracy"] = sum(label == truth for label, truth in checked) / len(checked)
            out["pseudo_label/checked"] = len(checked) / max(len(asked), 1)
        return out

    def _record(self, step, questions, labels, ps, rewards, penalties, asked, sout) -> None:
        answers = {i: [answer_key(s.text) for s in g] for i, g in zip(asked, sout["samples"])}
        check = CHECKERS[self.cc.checker]
        self.record(step, [{"question": q, "label": labels[i], "p": ps[i], "reward": rewards[i],
                            "penalty": penalties[i], "answers": answers.get(i, []),
                            "truth": check(q) if q else None} for i, q in enumerate(questions)])

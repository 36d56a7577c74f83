"""Training objectives the learner dispatches by name (plain torch: no Ray, no cluster/actors imports).

    grpo  clipped policy gradient on sampled responses (trainers/grpo.py); 1 row per unit; normaliser
          counts tokens (token_mean) or sequences (seq_mean, seq_sum); uses the behaviour logprobs; needs
          the frozen reference model only when kl_coef > 0; scores at the sampling temperature; a row whose
          advantages are all 0 carries no signal when kl_coef is 0.
    dpo   direct preference optimisation (trainers/preference.py) on (chosen, rejected) rows, adjacent in
          the batch; 2 rows per unit; normaliser counts pairs; always needs the reference model; no
          behaviour logprobs; scores at temperature 1 (the model's own distribution, as TRL does).
          Per-sequence log-probs: summed over the response tokens for sigmoid, averaged for ipo.
    sft   masked token negative log-likelihood, a token mean over the GLOBAL token count; 1 row per unit;
          normaliser counts tokens; no reference, no behaviour logprobs; temperature 1.

Each loss returns (loss, metrics). `loss` is already divided by the normaliser, so with the plan's
normaliser (global count / (world * k)) the micro-step losses average, uniformly over ranks and micro steps,
to the mini-batch's global loss (NORMALISED metrics). The other metrics are means over the micro batch's real
units, combined across micro batches and ranks weighted by `metric_weight` (padding has weight 0); the
MAX metrics take the maximum.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from trainers.batch import Batch, Trajectory, collate, collate_pairs
from trainers.grpo import micro_batch_loss, sequence_logprobs
from trainers.losses import PolicyLossConfig
from trainers.preference import (
    PreferenceConfig,
    check_loss_type,
    dpo_losses,
    preference_metrics,
)
from trainers.update_plan import COUNTS, count_for

MAX_METRICS = ("ratio_max", "logprob_gap/max_abs")
AGGREGATIONS = ("token_mean", "seq_mean", "seq_sum")


@dataclass
class LossSettings:
    """Everything an objective's loss needs from the run config (built by the learner group)."""
    policy: PolicyLossConfig = field(default_factory=PolicyLossConfig)
    dpo: PreferenceConfig = field(default_factory=PreferenceConfig)


def response_logprob_sums(model, batch: Batch, temperature: float = 1.0, mean: bool = False) -> torch.Tensor:
    """[B] loss-masked sum (or mean, for mean=True) of each row's response-token logprobs under `model`."""
    logprobs = sequence_logprobs(model, batch, temperature)
    mask = batch.loss_mask.to(logprobs.dtype)
    total = (logprobs * mask).sum(1)
    return total / mask.sum(1).clamp(min=1) if mean else total


def _divisor(normalizer: float | None, local: float) -> float:
    d = float(normalizer) if normalizer is not None else local
    return d if d > 0 else 1.0


class Objective:
    name = ""
    rows_per_unit = 1
    uses_behaviour_logprobs = False
    uses_temperature = False  # False: scored at temperature 1 whatever the caller passes
    normalised_metrics: tuple[str, ...] = ("loss",)
    # the learner metrics an update's row always carries, with their value when the update was skipped
    reported_metrics: dict[str, float] = {"loss": 0.0, "grad_norm": 0.0}
    # True: a row whose advantages are all 0 has a loss and gradient of exactly 0 without a KL term (kl_coef 0),
    # so a step of only such rows carries no signal and such rows can be left out of the forward/backward
    zero_advantage_is_no_signal = False

    def count(self, settings: LossSettings) -> str:
        """What the normaliser counts: tokens, sequences or pairs."""
        raise NotImplementedError

    def needs_reference(self, settings: LossSettings) -> bool:
        return False

    def check(self, settings: LossSettings) -> None:
        """Raise ValueError for settings this objective cannot run with (before any rank starts)."""

    def collate(self, trajectories: list[Trajectory], pad_id: int) -> Batch:
        return collate(trajectories, pad_id, require_behaviour=self.uses_behaviour_logprobs)

    def metric_weight(self, micro: Batch) -> float:
        """How much a micro batch's mean metrics weigh when combined: its real tokens (0 for padding)."""
        return count_for(micro, "tokens")

    def loss(self, model, micro: Batch, settings: LossSettings, normalizer: float | None, temperature: float,
             ref_model=None, learner_old: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, float]]:
        raise NotImplementedError


class GRPO(Objective):
    name = "grpo"
    uses_behaviour_logprobs = True
    uses_temperature = True
    normalised_metrics = ("loss", "pg_loss")
    reported_metrics = {"loss": 0.0, "pg_loss": 0.0, "kl": 0.0, "clip_frac": 0.0, "grad_norm": 0.0, "ratio_max": 1.0,
                        "logprob_gap/mean_abs": 0.0, "logprob_gap/max_abs": 0.0, "update/dropped_samples": 0.0,
                        "update/flat_groups": 0.0}
    zero_advantage_is_no_signal = True

    def count(self, settings):
        aggregation = settings.policy.aggregation
        if aggregation not in AGGREGATIONS:
            raise ValueError(f"unknown aggregation {aggregation!r}: use token_mean, seq_mean or seq_sum")
        return COUNTS[aggregation]

    def needs_reference(self, settings):
        return settings.policy.kl_coef > 0

    def check(self, settings):
        self.count(settings)

    def loss(self, model, micro, settings, normalizer, temperature, ref_model=None, learner_old=None):
        return micro_batch_loss(model, micro, settings.policy, normalizer, temperature, ref_model, learner_old)


class DPO(Objective):
    name = "dpo"
    rows_per_unit = 2
    normalised_metrics = ("loss",)

    def count(self, settings):
        return "pairs"

    def needs_reference(self, settings):
        return True

    def check(self, settings):
        check_loss_type(settings.dpo.loss_type)
        if settings.dpo.beta <= 0:
            raise ValueError(f"DPO beta must be > 0, got {settings.dpo.beta}")

    def collate(self, trajectories, pad_id):
        return collate_pairs(trajectories, pad_id)

    def metric_weight(self, micro):
        return count_for(micro, "pairs")

    def loss(self, model, micro, settings, normalizer, temperature, ref_model=None, learner_old=None):
        if ref_model is None:
            raise ValueError("the dpo objective needs the frozen reference model")
        if micro.unit != 2:
            raise ValueError("the dpo objective needs a batch of (chosen, rejected) pairs (collate_pairs)")
        d = settings.dpo
        mean = d.loss_type == "ipo"
        logps = response_logprob_sums(model, micro, 1.0, mean=mean)
        with torch.no_grad():
            ref = response_logprob_sums(ref_model, micro, 1.0, mean=mean)
        losses, stats = dpo_losses(logps[0::2], logps[1::2], ref[0::2], ref[1::2], d.beta, d.loss_type,
                                   d.label_smoothing)
        valid = micro.valid_rows()[0::2].to(losses.dtype)
        loss = (losses * valid).sum() / _divisor(normalizer, float(valid.sum()))
        metrics = {f"dpo/{k}": v for k, v in preference_metrics(losses, stats, d.beta, valid).items()}
        metrics["loss"] = loss.item()
        return loss, metrics


class SFT(Objective):
    name = "sft"

    def count(self, settings):
        return "tokens"

    def loss(self, model, micro, settings, normalizer, temperature, ref_model=None, learner_old=None):
        mask = micro.loss_mask
        nll = -(sequence_logprobs(model, micro, 1.0) * mask).sum()
        tokens = float(mask.sum())
        loss = nll / _divisor(normalizer, tokens)
        metrics = {"loss": loss.item()}
        if tokens:
            metrics["sft/nll"] = nll.item() / tokens
        return loss, metrics


OBJECTIVES: dict[str, Objective] = {o.name: o for o in (GRPO(), DPO(), SFT())}


def get_objective(name: str) -> Objective:
    try:
        return OBJECTIVES[name]
    except KeyError:
        raise ValueError(f"unknown objective {name!r}: use grpo, dpo or sft") from None


class MetricAccumulator:
    """One rank's metrics over an update: NORMALISED metrics averaged uniformly over the micro steps of each
    mini-batch then over mini-batches; MAX metrics maximised over micro batches with real units; the rest
    averaged weighted by each micro batch's metric weight. `result()` is what `merge_rank_metrics` combines."""

    def __init__(self, normalised: tuple[str, ...]):
        self.normalised = set(normalised)
        self.uniform: dict[str, list[float]] = {}  # per mini-batch: sum over its micro steps, count
        self.minibatch: dict[str, list[float]] = {}
        self.weighted: dict[str, list[float]] = {}  # sum of w * v, sum of w
        self.maxed: dict[str, float] = {}
        self.means: dict[str, list[float]] = {}  # plain per-update values (grad_norm)

    def add(self, metrics: dict[str, float], weight: float) -> None:
        for k, v in metrics.items():
            if k in self.normalised:
                acc = self.minibatch.setdefault(k, [0.0, 0])
                acc[0] += v
                acc[1] += 1
            elif weight <= 0:
                continue
            elif k in MAX_METRICS:
                self.maxed[k] = max(self.maxed.get(k, v), v)
            else:
                acc = self.weighted.setdefault(k, [0.0, 0.0])
                acc[0] += weight * v
                acc[1] += weight

    def add_value(self, key: str, value: float) -> None:
        self.means.setdefault(key, []).append(float(value))

    def end_minibatch(self) -> None:
        for k, (total, n) in self.minibatch.items():
            self.means.setdefault(k, []).append(total / max(n, 1))
        self.minibatch = {}

    def result(self) -> dict:
        self.end_minibatch()
        return {"mean": {k: sum(v) / len(v) for k, v in self.means.items() if v},
                "weighted": {k: (s / w, w) for k, (s, w) in self.weighted.items() if w > 0},
                "max": dict(self.maxed)}


def merge_rank_metrics(per_rank: list[dict]) -> dict[str, float]:
    """Combine every rank's MetricAccumulator.result() (plus plain extras in 'mean') into one flat dict:
    'mean' values averaged over ranks, 'weighted' by their weights, 'max' maximised."""
    out: dict[str, float] = {}
    keys = set().union(*(r["mean"] for r in per_rank))
    for k in keys:
        vals = [r["mean"][k] for r in per_rank if k in r["mean"]]
        out[k] = sum(vals) / len(vals)
    for k in set().union(*(r["weighted"] for r in per_rank)):
        pairs = [r["weighted"][k] for r in per_rank if k in r["weighted"]]
        total = sum(w for _, w in pairs)
        out[k] = sum(v * w for v, w in pairs) / total
    for k in set().union(*(r["max"] for r in per_rank)):
        out[k] = max(r["max"][k] for r in per_rank if k in r["max"])
    return out

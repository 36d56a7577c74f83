"""The `propose_critic` family's settings (episodes.propose_critic) and their checks."""
from __future__ import annotations

from dataclasses import dataclass

from cluster.config.errors import failed


@dataclass
class ProposeCriticConfig:
    """`propose_critic`: the proposer samples k candidate answers to a task, the critic sees them (numbered, in
    shuffled order) and picks one. Proposer reward = each candidate's score; critic reward = the score of its
    pick, trained only on groups whose candidates score differently. Maturity m = EMA of the critic's accuracy
    on those groups; loss weights: critic 1 - m, proposer m; the proposer's k and temperature rise with m."""
    k_min: int = 4  # candidates per task at maturity 0 ...
    k_max: int = 8  # ... and at maturity 1 (linear in between, rounded)
    temperature_min: float = 0.7  # the proposer's sampling temperature at maturity 0 ...
    temperature_max: float = 1.0  # ... and at maturity 1
    critic_samples: int = 4  # critic responses per candidate set as shown
    # shuffled orders each candidate set is shown in per step; the critic's GRPO group is the set's responses over
    # all of them (critic_orders x critic_samples). With 1, replies that name the same number whatever stands
    # there (a position bias) earn one reward and teach nothing; over several orders the same number lands on
    # different candidates, so the advantages can only favour replies that depend on the candidates. At
    # critic_temperature 1.0 one order carries a signal too (bench/README.md: 4 orders did no better than 1)
    critic_orders: int = 1
    critic_temperature: float = 1.0
    critic_max_new_tokens: int = 8
    # the start of the critic's reply, written for it (e.g. "Candidate "): the model continues with a number
    critic_prefix: str = ""
    maturity_init: float = 0.0
    maturity_decay: float = 0.8  # m <- decay * m + (1 - decay) * critic accuracy (steps with mixed groups)
    weights: str = "maturity"  # maturity (critic 1 - m, proposer m) | equal (both 1)
    render: str = "text"  # how candidates are shown to the critic (envs/render.py)
    max_candidate_chars: int = 400  # each candidate's text is cut to this many characters when shown
    # held-out candidate sets (the proposer's k_min answers to tasks no step trains on, mixed sets only) on which
    # the critic's greedy pick is measured before the first step and after the last; 0 = off
    heldout_tasks: int = 0
    # and its sampled picks: this many per held-out set at critic_temperature (the probability that the critic
    # picks a best candidate, per set: it moves before a greedy pick flips); 0 = greedy only
    heldout_samples: int = 8

    def check(self, cfg, policies: dict, judges: dict) -> list[str]:
        from envs.critique import RENDERERS

        where = "episodes.propose_critic"
        return failed(
            (2 <= self.k_min <= self.k_max, f"{where}.k_min={self.k_min}, k_max={self.k_max}: need 2 <= k_min <= "
                                            "k_max (the critic picks among at least two candidates)"),
            (0 < self.temperature_min <= self.temperature_max,
             f"{where}.temperature_min={self.temperature_min}, temperature_max={self.temperature_max}: need "
             "0 < min <= max"),
            (self.critic_samples >= 1, f"{where}.critic_samples={self.critic_samples}: must be at least 1"),
            (self.critic_orders >= 1, f"{where}.critic_orders={self.critic_orders}: must be at least 1"),
            (self.critic_temperature > 0, f"{where}.critic_temperature={self.critic_temperature}: must be > 0"),
            (self.critic_max_new_tokens >= 1,
             f"{where}.critic_max_new_tokens={self.critic_max_new_tokens}: must be >= 1"),
            (0.0 <= self.maturity_init <= 1.0, f"{where}.maturity_init={self.maturity_init}: must be in [0, 1]"),
            (0.0 <= self.maturity_decay < 1.0, f"{where}.maturity_decay={self.maturity_decay}: a decay in [0, 1)"),
            (self.weights in ("maturity", "equal"), f"{where}.weights={self.weights!r}: use maturity or equal"),
            (self.render in RENDERERS, f"{where}.render={self.render!r}: use {', '.join(RENDERERS)}"),
            (self.heldout_tasks >= 0, f"{where}.heldout_tasks={self.heldout_tasks}: must be >= 0 (0 = off)"),
            (self.max_candidate_chars >= 1, f"{where}.max_candidate_chars={self.max_candidate_chars}: must be >= 1"))

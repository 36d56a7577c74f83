"""The `challenger` family's settings (episodes.challenger) and their checks."""
from __future__ import annotations

from dataclasses import dataclass, field

from cluster.config.errors import failed


@dataclass
class ChallengerConfig:
    """`challenger` (R-Zero): the challenger writes questions of the environment's task family (its instances shown
    as examples); the solver answers each m times; pseudo-label = the majority answer, p = its share. Challenger
    reward min(p, 1 - p) minus a repetition penalty; the solver trains on questions with p in `band` against the
    pseudo-label."""
    family: str = ""  # one line naming the task family, shown above the examples
    examples: int = 2  # environment instances shown as examples (at seeds no step draws; new ones each step)
    answers: int = 8  # m: the solver's answers per question
    band: list[float] = field(default_factory=lambda: [0.3, 0.7])
    repetition_threshold: float = 0.85  # questions at least this similar (difflib ratio) share a cluster
    repetition_weight: float = 1.0  # penalty: weight * cluster size / batch size (clusters of 2 or more)
    max_new_tokens: int = 64  # the challenger's question
    max_question_chars: int = 400
    checker: str = "none"  # none | arithmetic: computes the true answer where it can (pseudo-label accuracy)
    solver_template: str = "{question}"  # how a question is put to the solver

    def check(self, cfg, policies: dict, judges: dict) -> list[str]:
        from envs.challenge import CHECKERS

        where = "episodes.challenger"
        return failed(
            (self.answers >= 2, f"{where}.answers={self.answers}: a majority needs at least two answers"),
            (self.examples >= 0 and self.max_new_tokens >= 1 and self.max_question_chars >= 1,
             f"{where}.examples must be >= 0, max_new_tokens and max_question_chars >= 1"),
            (len(self.band) == 2 and 0.0 <= self.band[0] <= self.band[1] <= 1.0,
             f"{where}.band={list(self.band)}: two agreement rates low <= high in [0, 1]"),
            (0.0 < self.repetition_threshold <= 1.0,
             f"{where}.repetition_threshold={self.repetition_threshold}: in (0, 1]"),
            (self.repetition_weight >= 0, f"{where}.repetition_weight={self.repetition_weight}: must be >= 0"),
            (self.checker in CHECKERS, f"{where}.checker={self.checker!r}: use {', '.join(CHECKERS)}"),
            ("{question}" in self.solver_template, f"{where}.solver_template must contain {{question}}"))

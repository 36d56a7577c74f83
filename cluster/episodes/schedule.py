"""Which episode kind runs at a step: the warm-up kinds once (e.g. an sft warm start), then a pattern from
config, repeated; a pure function of the step, so a resumed run needs no schedule state."""
from __future__ import annotations


class Schedule:
    def __init__(self, pattern: list[str], warmup: list[str] = ()):
        if not pattern:
            raise ValueError("a schedule needs at least one episode kind")
        self.pattern, self.warmup = list(pattern), list(warmup)

    def kind(self, step: int) -> str:
        if step < len(self.warmup):
            return self.warmup[step]
        return self.pattern[(step - len(self.warmup)) % len(self.pattern)]

    def kinds(self) -> list[str]:
        return list(dict.fromkeys(self.warmup + self.pattern))  # each kind once, in order of first use

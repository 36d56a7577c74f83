"""`episodes.echo`: the word the speaker should say."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass
class EchoConfig:
    word: str = "hello"
    prompts: int = 2  # prompts per step

    def check(self, cfg, policies: dict, judges: dict) -> list[str]:
        problems = []
        if not self.word:
            problems.append("episodes.echo.word: give a word to say")
        if self.prompts < 1:
            problems.append(f"episodes.echo.prompts={self.prompts}: must be at least 1")
        return problems

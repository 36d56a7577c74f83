"""Judges that are not judge-pool actors, with the pool's interface (judge(requests) -> results):
a policy asked greedily (self-play's L4 review by the model being trained) and a scripted judge that gives
fixed answers (tests, scripted runs)."""
from __future__ import annotations

from dataclasses import replace

from envs.proposal import parse_yes_no


def _parse(text: str, parse: str):
    if parse != "yes_no":
        from actors.judge import parse_verdict

        return parse_verdict(text, parse)
    return parse_yes_no(text)


class PolicyJudge:
    kind = "generative"

    def __init__(self, name: str, policy, max_new_tokens: int, template: str = "{question}", parse: str = "yes_no"):
        self.name, self.policy, self.template, self.parse = name, policy, template, parse
        self.max_new_tokens = max_new_tokens
        self.counts = {"calls": 0, "requests": 0, "unparseable": 0}

    def judge(self, requests: list[dict]) -> list[dict]:
        sampling = replace(self.policy.sampling, n=1, temperature=0.0, cuts_fraction=0.0,
                           max_new_tokens=self.max_new_tokens, stop=[])
        prompts = [self.policy.encode(self.template.format(**r)) for r in requests]
        out = self.policy.generate(prompts, sampling, seed=0)
        return self._results([g[0].text for g in out["samples"]])

    def _results(self, texts: list[str]) -> list[dict]:
        self.counts["calls"] += 1
        self.counts["requests"] += len(texts)
        results = []
        for text in texts:
            value = _parse(text, self.parse)
            self.counts["unparseable"] += value is None
            results.append({"text": text, "value": value, "parsed": value is not None})
        return results

    def metrics(self) -> dict:
        return {f"judge/{self.name}/{k}": v for k, v in self.counts.items()}

    def close(self) -> None:
        pass


class ScriptedJudge(PolicyJudge):
    """Always the same answer (e.g. "yes"): the stand-in reviewer of scripted runs."""

    def __init__(self, name: str, answer: str, parse: str = "yes_no"):
        super().__init__(name, None, 0, parse=parse)
        self.answer = answer

    def judge(self, requests: list[dict]) -> list[dict]:
        return self._results([self.answer] * len(requests))

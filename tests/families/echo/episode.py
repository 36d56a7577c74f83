"""`echo`: the speaker is asked to say a word; reward 1 for saying it. Keeps a count of the words said so far,
which a resumed run must carry over (save/load), and one record per step."""
from __future__ import annotations

import json
from pathlib import Path

from cluster.episodes.common import reward_metrics, to_trajectories
from cluster.episodes.protocol import Episode, EpisodeResult, RoleUpdate


class EchoEpisode(Episode):
    kind, roles, label = "echo", ("speaker",), "speaker"

    def __init__(self, ctx):
        super().__init__(ctx)
        self.said = 0

    def run(self, step: int, ctx) -> EpisodeResult:
        ec, speaker = ctx.cfg.episodes.echo, ctx.policy("speaker")
        prompts = [speaker.encode(f"Say {ec.word}:") for _ in range(ec.prompts)]
        out = speaker.generate(prompts, speaker.sampling, seed=step)
        rewards = [float(s.text.strip() == ec.word) for g in out["samples"] for s in g]
        self.said += int(sum(rewards))
        trajectories = to_trajectories(prompts, out["samples"], out["version"], "speaker", self.kind, rewards)
        ctx.set_advantages("speaker", trajectories)
        self.record(step, [{"said": self.said}])
        return EpisodeResult({"speaker": RoleUpdate(trajectories, recompute_old=out["off_policy"])},
                             {**reward_metrics(trajectories), "echo/hits": int(sum(rewards)), "echo/said": self.said})

    def save(self, folder: Path) -> None:
        super().save(folder)  # the records so far
        self.state_dir(folder).mkdir(parents=True, exist_ok=True)
        (self.state_dir(folder) / "said.json").write_text(json.dumps(self.said))

    def load(self, folder: Path) -> None:
        self.said = json.loads((self.state_dir(folder) / "said.json").read_text())

"""Pieces several episode kinds share: samples -> trajectories, reward statistics."""
from __future__ import annotations

import json
from pathlib import Path

import torch

from trainers.advantages import zero_advantage_fraction
from trainers.batch import Trajectory


def to_trajectories(prompts: list[list[int]], samples: list[list], version: int, role: str, kind: str,
                    rewards: list[float]) -> list[Trajectory]:
    """One trajectory per sample; the samples of one prompt share a group id."""
    flat = [(g, p, s) for g, (p, group) in enumerate(zip(prompts, samples)) for s in group]
    return [Trajectory(prompt_ids=p, response_ids=s.response_ids, behaviour_logprobs=s.logprobs, group_id=g,
                       role=role, episode=kind, policy_version=version, reward=r)
            for (g, p, s), r in zip(flat, rewards)]


def reward_metrics(trajectories: list[Trajectory]) -> dict:
    rewards = torch.tensor([t.reward for t in trajectories], dtype=torch.float32)
    groups = torch.tensor([t.group_id for t in trajectories])
    lengths = torch.tensor([len(t.response_ids) for t in trajectories], dtype=torch.float32)
    return {"reward/mean": rewards.mean().item(), "reward/std": rewards.std().item() if len(rewards) > 1 else 0.0,
            "reward/max": rewards.max().item(), "zero_advantage_fraction": zero_advantage_fraction(rewards, groups),
            "response_length/mean": lengths.mean().item()}


def response_ids(tokenizer, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False).input_ids


def scale_advantages(trajectories: list[Trajectory], weight: float) -> None:
    """A role's loss weight: the policy-gradient loss is linear in the advantages, so scaling them by `weight`
    scales the role's loss (per-token advantages too, where set)."""
    for t in trajectories:
        t.advantage *= weight
        if t.token_advantages is not None:
            t.token_advantages = [a * weight for a in t.token_advantages]


def append_records(path: Path, records: list[dict]) -> None:
    """One JSON line per record (an episode's per-group log under run_dir/episodes/)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as f:
        f.writelines(json.dumps(r) + "\n" for r in records)


def trim_records(path: Path, step: int) -> None:
    """Resuming at `step`: drop the records of that step and later (they are written again)."""
    if path.is_file():
        keep = [ln for ln in path.read_text().splitlines() if ln.strip() and json.loads(ln)["step"] < step]
        path.write_text("".join(ln + "\n" for ln in keep))

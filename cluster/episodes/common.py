"""Pieces several episode kinds share: samples -> trajectories, reward statistics."""
from __future__ import annotations

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

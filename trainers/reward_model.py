"""A scalar reward model trained on preference pairs (Bradley-Terry), plain torch and transformers.

    loss = -log sigmoid(r(prompt, chosen) - r(prompt, rejected))      averaged over the pairs of a batch

The model is the policy's backbone with a one-logit sequence-classification head (trainers/scalar_head.py),
saved as an HF folder that the judge pool loads as a `scalar` judge.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from trainers.scalar_head import head_logits, load_classifier, reward_text, train_head


def bradley_terry_loss(chosen: torch.Tensor, rejected: torch.Tensor) -> torch.Tensor:
    return -F.logsigmoid(chosen - rejected).mean()


class RewardModelTrainer:
    """Trains a reward model from a causal LM folder on (prompt, chosen, rejected) texts."""

    def __init__(self, model_path: str, chat_template: bool, lr: float = 1e-5, seed: int = 0, threads: int = 0,
                 max_length: int = 1024):
        self.seed, self.chat_template, self.max_length = seed, chat_template, max_length
        self.tokenizer, self.model = load_classifier(model_path, seed, threads)
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=lr)

    def scores(self, prompts: list[str], responses: list[str]) -> torch.Tensor:
        texts = [reward_text(self.tokenizer, p, r, self.chat_template) for p, r in zip(prompts, responses)]
        return head_logits(self.model, self.tokenizer, texts, self.max_length, self.chat_template)

    def train(self, pairs: list[tuple[str, str, str]], epochs: int, batch_size: int = 8) -> list[float]:
        """Epochs over the pairs in a seeded shuffle; returns each batch's loss."""
        def batch_loss(indices: list[int]) -> torch.Tensor:
            batch = [pairs[j] for j in indices]
            prompts = [p for p, _, _ in batch]
            chosen = self.scores(prompts, [c for _, c, _ in batch])
            rejected = self.scores(prompts, [r for _, _, r in batch])
            return bradley_terry_loss(chosen, rejected)

        return train_head(self.model, self.optimizer, len(pairs), batch_loss, epochs, batch_size, self.seed)

    @torch.no_grad()
    def accuracy(self, pairs: list[tuple[str, str, str]]) -> list[float]:
        """Per pair: 1 when the chosen response scores above the rejected one, 0.5 on a tie, else 0."""
        out = []
        for i in range(0, len(pairs), 16):
            batch = pairs[i:i + 16]
            prompts = [p for p, _, _ in batch]
            c = self.scores(prompts, [x for _, x, _ in batch])
            r = self.scores(prompts, [x for _, _, x in batch])
            out += [1.0 if a > b else 0.5 if a == b else 0.0 for a, b in zip(c.tolist(), r.tolist())]
        return out

    def save(self, folder: Path) -> None:
        self.model.save_pretrained(folder)
        self.tokenizer.save_pretrained(folder)

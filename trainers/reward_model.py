"""A scalar reward model trained on preference pairs (Bradley-Terry), plain torch and transformers.

    loss = -log sigmoid(r(prompt, chosen) - r(prompt, rejected))      averaged over the pairs of a batch

The model is the policy's backbone with a one-logit sequence-classification head (read at the last real
token), saved as an HF folder that the judge pool loads as a `scalar` judge. `reward_text` is the one text
form of (prompt, response) that training and judging share.
"""
from __future__ import annotations

import random
from pathlib import Path

import torch
import torch.nn.functional as F


def bradley_terry_loss(chosen: torch.Tensor, rejected: torch.Tensor) -> torch.Tensor:
    return -F.logsigmoid(chosen - rejected).mean()


def reward_text(tokenizer, prompt: str, response: str, chat_template: bool) -> str:
    if chat_template:
        return tokenizer.apply_chat_template([{"role": "user", "content": prompt},
                                              {"role": "assistant", "content": response}], tokenize=False)
    return prompt + response


def load_classifier(model_path: str, seed: int, threads: int = 0):
    """(tokenizer, one-logit sequence classifier in float32) from a causal-LM folder (a fresh, seeded head) or a
    reward model's folder; padding right, and an over-long text keeps its end, where the response is."""
    from transformers import AutoModelForSequenceClassification

    from trainers.models import load_tokenizer

    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(seed)
    tokenizer = load_tokenizer(model_path)
    tokenizer.padding_side, tokenizer.truncation_side = "right", "left"
    model = AutoModelForSequenceClassification.from_pretrained(model_path, num_labels=1, dtype=torch.float32)
    model.config.pad_token_id = tokenizer.pad_token_id
    return tokenizer, model


class RewardModelTrainer:
    """Trains a reward model from a causal LM folder on (prompt, chosen, rejected) texts."""

    def __init__(self, model_path: str, chat_template: bool, lr: float = 1e-5, seed: int = 0, threads: int = 0,
                 max_length: int = 1024):
        self.seed, self.chat_template, self.max_length = seed, chat_template, max_length
        self.tokenizer, self.model = load_classifier(model_path, seed, threads)
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=lr)

    def scores(self, prompts: list[str], responses: list[str]) -> torch.Tensor:
        texts = [reward_text(self.tokenizer, p, r, self.chat_template) for p, r in zip(prompts, responses)]
        enc = self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt",
                             add_special_tokens=not self.chat_template)
        return self.model(input_ids=enc.input_ids, attention_mask=enc.attention_mask).logits[:, 0].float()

    def train(self, pairs: list[tuple[str, str, str]], epochs: int, batch_size: int = 8) -> list[float]:
        """Epochs over the pairs in a seeded shuffle; returns each batch's loss."""
        rng, losses = random.Random(self.seed), []
        self.model.train()
        for _ in range(epochs):
            order = rng.sample(range(len(pairs)), len(pairs))
            for i in range(0, len(order), batch_size):
                batch = [pairs[j] for j in order[i:i + batch_size]]
                prompts = [p for p, _, _ in batch]
                chosen = self.scores(prompts, [c for _, c, _ in batch])
                rejected = self.scores(prompts, [r for _, _, r in batch])
                loss = bradley_terry_loss(chosen, rejected)
                self.optimizer.zero_grad()
                loss.backward()
                self.optimizer.step()
                losses.append(loss.item())
        self.model.eval()
        return losses

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

"""A process reward model (PRM) trained on Monte-Carlo step values, plain torch and transformers.

    loss = BCE-with-logits(r(prompt, prefix), value)      value: the fraction of continuations from the step
                                                          that succeeded, a soft target in [0, 1]

The model is a one-logit sequence-classification head (read at the last real token) on a backbone, trained
either alone (`trainable="head"`, the backbone frozen) or with it (`"all"`). A step's score is the sigmoid of
its logit on `reward_text(prompt, prefix)`, the text the process judge scores for the step, so the saved
folder loads as a judge of kind `process`. `agreement` measures it against held-out MC values.
"""
from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F

from trainers.scalar_head import head_logits, load_classifier, reward_text, train_head

TRAINABLE = ("head", "all")


def step_prefix_text(text: str, separator: str) -> str:
    """A step's prefix as the process judge sees it: one trailing separator dropped (its spans end before it)."""
    if not separator:
        raise ValueError("step separator must not be empty")
    return text.removesuffix(separator)


def _check_values(examples: list[tuple[str, str, float]]) -> None:
    for i, (_, _, value) in enumerate(examples):
        try:
            ok = math.isfinite(float(value)) and 0.0 <= float(value) <= 1.0
        except (TypeError, ValueError):
            ok = False
        if not ok:
            raise ValueError(f"PRM example {i}: value {value!r} is not a probability in [0, 1]")


def agreement_metrics(scores: list[float], values: list[float]) -> dict:
    """How PRM scores (probabilities) agree with MC values: n; mae, the mean |score - value|; pearson, None when
    either side is constant (undefined); ranking, over the pairs with different values the fraction the scores
    order the same way (a score tie counts 0.5; None without such a pair); sign_accuracy, the fraction where
    score >= 0.5 exactly when value >= 0.5. On no examples every measure is None."""
    if len(scores) != len(values):
        raise ValueError(f"{len(scores)} scores but {len(values)} values")
    n = len(scores)
    if n == 0:
        return {"n": 0, "mae": None, "pearson": None, "ranking": None, "sign_accuracy": None}
    s = torch.tensor(scores, dtype=torch.float64)
    v = torch.tensor(values, dtype=torch.float64)
    ds, dv = s - s.mean(), v - v.mean()
    spread = math.sqrt(float((ds * ds).sum()) * float((dv * dv).sum()))
    pearson = max(-1.0, min(1.0, float((ds * dv).sum()) / spread)) if spread > 0 else None
    agree, pairs = 0.0, 0
    for i in range(n - 1):  # one row of the pair matrix at a time: memory O(n)
        order = torch.sign(v[i + 1:] - v[i])
        ranked = order != 0
        agree += float(((1 + order * torch.sign(s[i + 1:] - s[i])) / 2)[ranked].sum())
        pairs += int(ranked.sum())
    return {"n": n, "mae": float((s - v).abs().mean()), "pearson": pearson,
            "ranking": agree / pairs if pairs else None,
            "sign_accuracy": float(((s >= 0.5) == (v >= 0.5)).double().mean())}


class ProcessRewardTrainer:
    """Trains a PRM from a causal LM or sequence-classification folder on (prompt, prefix, value) examples."""

    def __init__(self, model_path: str, chat_template: bool, lr: float = 1e-4, seed: int = 0, threads: int = 0,
                 max_length: int = 1024, trainable: str = "head"):
        if trainable not in TRAINABLE:
            raise ValueError(f"trainable={trainable!r}: use one of {', '.join(TRAINABLE)}")
        self.seed, self.chat_template, self.max_length = seed, chat_template, max_length
        self.tokenizer, self.model = load_classifier(model_path, seed, threads)
        positions = getattr(self.model.config, "max_position_embeddings", None)
        if isinstance(positions, int) and 0 < positions < max_length:
            self.max_length = positions  # as the judge truncates: the model's own limit
        self.trainable = trainable
        if trainable == "head":
            head = self.head_parameter_names()
            for name, p in self.model.named_parameters():
                p.requires_grad_(name in head)
        self.optimizer = torch.optim.AdamW([p for p in self.model.parameters() if p.requires_grad], lr=lr)

    @classmethod
    def from_folder(cls, folder: Path | str, chat_template: bool, **kw) -> ProcessRewardTrainer:
        """A saved PRM back (its trained head included), e.g. to resume."""
        return cls(str(folder), chat_template, **kw)

    def head_parameter_names(self) -> set[str]:
        """The classification head's parameters: every one outside the backbone (`base_model_prefix`)."""
        prefix = self.model.base_model_prefix
        if getattr(self.model, prefix, None) is None:
            raise ValueError(f"{type(self.model).__name__} has no backbone {prefix!r} to freeze; use trainable=all")
        names = {n for n, _ in self.model.named_parameters() if not n.startswith(prefix + ".")}
        if not names:
            raise ValueError(f"{type(self.model).__name__} has no head parameters outside {prefix!r}")
        return names

    def texts(self, prompts: list[str], prefixes: list[str]) -> list[str]:
        return [reward_text(self.tokenizer, p, r, self.chat_template) for p, r in zip(prompts, prefixes)]

    def logits(self, prompts: list[str], prefixes: list[str]) -> torch.Tensor:
        return head_logits(self.model, self.tokenizer, self.texts(prompts, prefixes), self.max_length,
                           self.chat_template)

    @torch.no_grad()
    def scores(self, prompts: list[str], prefixes: list[str], batch_size: int = 16) -> torch.Tensor:
        """Each step's probability of success: the sigmoid of its logit."""
        self.model.eval()
        out = [torch.sigmoid(self.logits(prompts[i:i + batch_size], prefixes[i:i + batch_size])).cpu()
               for i in range(0, len(prompts), batch_size)]
        return torch.cat(out) if out else torch.zeros(0)

    def train(self, examples: list[tuple[str, str, float]], epochs: int, batch_size: int = 8) -> list[float]:
        """Epochs over the examples in a seeded shuffle; returns each batch's loss."""
        if not examples:
            raise ValueError("no examples to train the PRM on")
        _check_values(examples)
        head = getattr(self.model, "score", None)
        if self.trainable == "head" and isinstance(head, torch.nn.Linear):
            # the frozen backbone's features once, then epochs over the head alone (the same logits, far less work)
            features = self._features([p for p, _, _ in examples], [r for _, r, _ in examples])
        else:
            features = None

        def batch_loss(indices: list[int]) -> torch.Tensor:
            batch = [examples[j] for j in indices]
            if features is not None:
                logits = head(features[indices]).float()[:, 0]
            else:
                logits = self.logits([p for p, _, _ in batch], [r for _, r, _ in batch])
            target = torch.tensor([float(v) for _, _, v in batch], device=logits.device)
            return F.binary_cross_entropy_with_logits(logits, target)

        return train_head(self.model, self.optimizer, len(examples), batch_loss, epochs, batch_size, self.seed)

    @torch.no_grad()
    def _features(self, prompts: list[str], prefixes: list[str], batch_size: int = 16) -> torch.Tensor:
        """The backbone's last hidden state at the token the head reads (the last one that is not padding)."""
        backbone = getattr(self.model, self.model.base_model_prefix)
        pad, out = self.model.config.pad_token_id, []
        for i in range(0, len(prompts), batch_size):
            enc = self.tokenizer(self.texts(prompts[i:i + batch_size], prefixes[i:i + batch_size]), padding=True,
                                 truncation=True, max_length=self.max_length, return_tensors="pt",
                                 add_special_tokens=not self.chat_template)
            ids = enc.input_ids.to(self.model.device)
            hidden = backbone(input_ids=ids, attention_mask=enc.attention_mask.to(ids.device)).last_hidden_state
            last = (torch.arange(ids.shape[1], device=ids.device) * (ids != pad).int()).argmax(-1)
            out.append(hidden[torch.arange(len(ids), device=ids.device), last])
        return torch.cat(out)

    def agreement(self, examples: list[tuple[str, str, float]]) -> dict:
        """`agreement_metrics` of the PRM's scores against held-out (prompt, prefix, value) examples."""
        _check_values(examples)
        scores = self.scores([p for p, _, _ in examples], [r for _, r, _ in examples])
        return agreement_metrics(scores.tolist(), [float(v) for _, _, v in examples])

    def save(self, folder: Path) -> None:
        self.model.save_pretrained(folder)
        self.tokenizer.save_pretrained(folder)

"""A one-logit sequence-classification head on a language-model backbone, read at the last real token: the
scalar reward model and the process reward model. How one is loaded, the one text form of (prompt, response)
that training and judging share, its logits, and its training loop (a seeded shuffle, one optimizer step per
batch)."""
from __future__ import annotations

import random
from typing import Callable

import torch


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


def head_logits(model, tokenizer, texts: list[str], max_length: int, chat_template: bool) -> torch.Tensor:
    """[B] float32 logit of each text (truncated to max_length tokens, keeping its end)."""
    enc = tokenizer(texts, padding=True, truncation=True, max_length=max_length, return_tensors="pt",
                    add_special_tokens=not chat_template)
    device = model.device
    return model(input_ids=enc.input_ids.to(device), attention_mask=enc.attention_mask.to(device)).logits[:, 0].float()


def train_head(model, optimizer, n: int, batch_loss: Callable[[list[int]], torch.Tensor], epochs: int,
               batch_size: int, seed: int) -> list[float]:
    """Epochs over n examples in a shuffle seeded by `seed`: each batch of example indices gets its loss from
    `batch_loss` and one optimizer step. The model trains in train mode and is left in eval mode; returns each
    batch's loss."""
    rng, losses = random.Random(seed), []
    model.train()
    for _ in range(epochs):
        order = rng.sample(range(n), n)
        for i in range(0, n, batch_size):
            loss = batch_loss(order[i:i + batch_size])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
    model.eval()
    return losses

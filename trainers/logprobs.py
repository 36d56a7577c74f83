"""Per-token log-probabilities and entropies from language-model logits."""
from __future__ import annotations

import torch

# Positions per float32 chunk: bounds the temporary copy to CHUNK * V floats (under no_grad;
# with grad, autograd keeps each chunk's input for the backward pass anyway).
CHUNK = 1024


def _row_chunks(logits: torch.Tensor):
    """Yield (b, start, chunk) over contiguous [n, V] slices of logits[b, :-1] (no copy)."""
    for b in range(logits.shape[0]):
        row = logits[b, :-1]
        for start in range(0, row.shape[0], CHUNK):
            yield b, start, row[start : start + CHUNK]


def token_logprobs(logits: torch.Tensor, input_ids: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """log softmax(logits[:, t] / temperature)[input_ids[:, t+1]] in float32: [B, T-1].

    Uses gathered logit minus logsumexp so no full [B, T, V] log_softmax is materialised.
    """
    if temperature <= 0:
        raise ValueError("temperature must be > 0")
    out = []
    for b, start, chunk in _row_chunks(logits):
        x = chunk.float()
        if temperature != 1.0:
            x = x / temperature
        target = input_ids[b, start + 1 : start + 1 + x.shape[0]].unsqueeze(-1)
        out.append(x.gather(-1, target).squeeze(-1) - torch.logsumexp(x, dim=-1))
    B, T = input_ids.shape
    if not out:
        return logits.new_zeros(B, max(T - 1, 0), dtype=torch.float32)
    return torch.cat(out).view(B, T - 1)


def gathered_logprobs(logits: torch.Tensor, targets: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """log softmax(logits[:, i] / temperature)[targets[:, i]] in float32: [B, N] from logits [B, N, V] whose
    positions are already the scored ones (targets: the token each predicts), in chunks of positions."""
    if temperature <= 0:
        raise ValueError("temperature must be > 0")
    out = []
    for b in range(logits.shape[0]):
        for start in range(0, logits.shape[1], CHUNK):
            x = logits[b, start:start + CHUNK].float()
            if temperature != 1.0:
                x = x / temperature
            target = targets[b, start:start + x.shape[0]].unsqueeze(-1)
            out.append(x.gather(-1, target).squeeze(-1) - torch.logsumexp(x, dim=-1))
    return torch.cat(out).view(targets.shape)


def entropy_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """Entropy of softmax(logits) at every position, in float32: [..., V] -> [...].

    H = logsumexp(x) - sum(softmax(x) * x), computed in chunks of positions.
    """
    flat = logits.reshape(-1, logits.shape[-1])
    out = []
    for chunk in flat.split(CHUNK, dim=0):
        x = chunk.float()
        p = torch.softmax(x, -1)
        # Masked-out vocab (-inf logits, p = 0) would give 0 * -inf = NaN; it contributes 0.
        out.append(torch.logsumexp(x, -1) - torch.where(p > 0, p * x, 0.0).sum(-1))
    if not out:
        return logits.new_zeros(logits.shape[:-1], dtype=torch.float32)
    return torch.cat(out).view(logits.shape[:-1])

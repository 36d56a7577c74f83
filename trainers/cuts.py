"""CUTS: sample uniformly from the set of tokens that survive the configured truncation.

At each decoding step the *candidate set* is the set of tokens that survive top-k, then top-p,
then min-p, applied (in that order, like transformers' warpers) to the temperature-scaled
distribution. CUTS draws the next token uniformly from that set, so the behaviour log-probability
of the sampled token is exactly ``-log(|set|)``.

Set semantics (`truncation_mask`), per row, with ``z = logits / temperature``:

* top-k (``top_k > 0``): keep the tokens whose logit is >= the k-th largest logit. Ties at the
  boundary are all kept (the set can be larger than k), exactly like HF's ``TopKLogitsWarper``
  and vLLM's top-k. ``top_k <= 0`` or ``top_k >= V`` is off.
* top-p (``top_p < 1``): on the distribution renormalised over the top-k survivors, keep the
  smallest prefix (in decreasing probability) whose cumulative probability is >= p, i.e. keep a
  token when the mass strictly ranked before it is < p. The most probable token is always kept
  (also for ``top_p <= 0``). Ties at the boundary are all kept: every token whose probability
  equals the least probable kept token is kept, so the set does not depend on how a sort orders
  equal values (HF's ``TopPLogitsWarper`` may keep only some of exactly-tied tokens; with no exact
  ties the two agree, up to float rounding exactly at the boundary).
* min-p (``min_p > 0``): keep tokens with ``prob >= min_p * max_prob`` (computed in log space as
  ``z_i - z_max >= log(min_p)``; the ratio does not depend on the earlier renormalisations).
* no truncation (``top_k=0, top_p=1, min_p=0``): the set is the whole vocabulary (every token
  with a finite logit) and CUTS is uniform over the vocabulary. This is allowed on purpose.
* tokens whose logit is already -inf (or NaN), e.g. masked by another processor, are never in
  the set.
* ``temperature <= 0`` (greedy): the set is the argmax token(s). CUTS needs sampling, so the
  HF processor refuses temperature <= 0; `truncation_mask` still answers for completeness.

Entry points
------------
* `truncation_mask`, `cuts_sample`, `cuts_logprobs_from_mask`, `cuts_logprobs_from_logits`:
  plain torch.
* HF: `CUTSLogitsProcessor` (+ `hf_cuts_generate_kwargs`, `cuts_logprobs_from_scores`,
  `behaviour_logprobs_from_scores`).
* vLLM V1: `actors.rollout.vllm_cuts` (the engine's logits processor and request kwargs),
  built on `truncation_mask`.
* Mixed-CUTS: `split_mixed`, `mixed_cuts_rows`, `mixed_group_metrics`.

No Ray and no vLLM import at module level.
"""
from __future__ import annotations

import math
from typing import Any

import torch
from transformers import LogitsProcessor

from trainers.advantages import group_index

Number = float | int
Param = Number | torch.Tensor



# ---------------------------------------------------------------------------------------------
# the candidate set
# ---------------------------------------------------------------------------------------------
def _per_row(value: Param, rows: int, dtype: torch.dtype, device) -> torch.Tensor:
    """A scalar or a [B] tensor as a [B, 1] column."""
    t = torch.as_tensor(value, dtype=dtype, device=device)
    if t.dim() == 0:
        t = t.expand(rows)
    if t.shape != (rows,):
        raise ValueError(f"per-row parameter has shape {tuple(t.shape)}, expected ({rows},)")
    return t.reshape(rows, 1)


def _no_top_p(top_p: Param) -> bool:
    if isinstance(top_p, torch.Tensor):
        return top_p.numel() == 1 and bool(top_p >= 1)
    return top_p is None or top_p >= 1


def _mask_without_top_p(z: torch.Tensor, top_k: int, min_p: Param) -> torch.Tensor:
    """Fast path (no sort): top-k by torch.topk and min-p against the row max."""
    keep = z > -math.inf
    V = z.shape[1]
    if 0 < top_k < V:
        keep &= z >= torch.topk(z, top_k, dim=-1).values[:, -1:]
    m = _per_row(min_p, z.shape[0], z.dtype, z.device)
    log_m = torch.where(m > 0, torch.log(m.clamp(min=torch.finfo(z.dtype).tiny)),
                        torch.full_like(m, -math.inf))
    keep &= (z - z.amax(-1, keepdim=True)) >= log_m
    return keep


def truncation_mask(logits: torch.Tensor, temperature: Param = 1.0, top_k: Param = 0,
                    top_p: Param = 1.0, min_p: Param = 0.0) -> torch.Tensor:
    """Bool [B, V]: the tokens that survive temperature -> top-k -> top-p -> min-p (see module doc).

    Each parameter is a number or a per-row tensor [B]. Fully vectorised: one sort per call.
    A row whose logits are all -inf gets an empty set.
    """
    if logits.dim() != 2:
        raise ValueError(f"logits must be [B, V], got shape {tuple(logits.shape)}")
    top_k = 0 if top_k is None else top_k
    top_p = 1.0 if top_p is None else top_p
    min_p = 0.0 if min_p is None else min_p
    x = logits.float() if logits.dtype in (torch.float16, torch.bfloat16) else logits
    x = torch.nan_to_num(x, nan=-math.inf, posinf=torch.finfo(x.dtype).max, neginf=-math.inf)
    B, V = x.shape
    dev = x.device
    if _no_top_p(top_p) and not isinstance(top_k, torch.Tensor) and not isinstance(temperature, torch.Tensor) \
            and temperature > 0:
        return _mask_without_top_p(x / temperature, int(top_k or 0), min_p)
    temp = _per_row(temperature, B, x.dtype, dev)
    k = _per_row(top_k, B, torch.long, dev)
    p = _per_row(top_p, B, x.dtype, dev)
    m = _per_row(min_p, B, x.dtype, dev)
    greedy = temp <= 0

    z = x / torch.where(greedy, torch.ones_like(temp), temp)
    z_sorted, order = torch.sort(z, dim=-1, descending=True, stable=True)
    finite = z_sorted > -math.inf

    # top-k, tie-inclusive: keep values >= the k-th largest
    k_eff = torch.where((k <= 0) | (k > V), torch.full_like(k, V), k)
    kth = z_sorted.gather(1, k_eff - 1)
    keep = finite & (z_sorted >= kth)

    # top-p on the renormalised top-k distribution, tie-inclusive at the boundary
    masked = z_sorted.masked_fill(~keep, -math.inf)
    probs = torch.softmax(masked, dim=-1)
    before = torch.cumsum(probs, dim=-1) - probs  # mass strictly ranked before each token
    prefix = before < p
    prefix[:, 0] = True  # the most probable token is always kept
    prefix &= keep
    prefix |= (p >= 1)  # top_p >= 1: off (avoids float cumsum rounding dropping the tail)
    last = (prefix & keep).sum(-1, keepdim=True).clamp(min=1) - 1
    threshold = masked.gather(1, last)
    keep &= masked >= threshold

    # min-p: prob_i >= min_p * prob_max  <=>  z_i - z_max >= log(min_p)
    log_m = torch.where(m > 0, torch.log(m.clamp(min=torch.finfo(x.dtype).tiny)),
                        torch.full_like(m, -math.inf))
    keep &= (z_sorted - z_sorted[:, :1]) >= log_m

    # greedy rows: the argmax ties only
    keep = torch.where(greedy, finite & (z_sorted >= z_sorted[:, :1]), keep)
    return torch.zeros_like(keep).scatter(1, order, keep)


def cuts_logprobs_from_mask(mask: torch.Tensor) -> torch.Tensor:
    """-log(|set|) per row (float32, correctly rounded from float64). Shape: mask.shape[:-1]."""
    return -torch.log(mask.sum(-1).to(torch.float64)).to(torch.float32)


def cuts_logprobs_from_logits(logits: torch.Tensor, temperature: Param = 1.0, top_k: Param = 0,
                              top_p: Param = 1.0, min_p: Param = 0.0) -> torch.Tensor:
    """-log(|set|) from raw logits [B, V], or [B, S, V] (every step, e.g. HF's output_logits).

    Per-row parameters are [B] in both cases.
    """
    if logits.dim() not in (2, 3):
        raise ValueError(f"logits must be [B, V] or [B, S, V], got shape {tuple(logits.shape)}")
    if logits.dim() == 2:
        return cuts_logprobs_from_mask(truncation_mask(logits, temperature, top_k, top_p, min_p))
    B, S, V = logits.shape

    def rows(v):
        return v.repeat_interleave(S) if isinstance(v, torch.Tensor) and v.dim() == 1 else v

    mask = truncation_mask(logits.reshape(B * S, V), rows(temperature), rows(top_k), rows(top_p), rows(min_p))
    return cuts_logprobs_from_mask(mask).reshape(B, S)


def cuts_sample(logits: torch.Tensor, temperature: Param = 1.0, top_k: Param = 0, top_p: Param = 1.0,
                min_p: Param = 0.0, generator: torch.Generator | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """One CUTS step: (tokens LongTensor[B], logprobs FloatTensor[B] = -log(|set|))."""
    mask = truncation_mask(logits, temperature, top_k, top_p, min_p)
    if not bool(mask.any(-1).all()):
        raise ValueError("a row has an empty candidate set (all logits -inf)")
    tokens = torch.multinomial(mask.float(), 1, generator=generator).squeeze(1)
    return tokens, cuts_logprobs_from_mask(mask)


# ---------------------------------------------------------------------------------------------
# transformers generate
# ---------------------------------------------------------------------------------------------
def hf_cuts_generate_kwargs() -> dict[str, Any]:
    """The sampling kwargs for `model.generate` when `CUTSLogitsProcessor` is in logits_processor.

    HF appends its own warpers (temperature, top-k, top-p, min-p, typical, epsilon, eta, top-h)
    AFTER custom logits processors (transformers 5.19 `_get_logits_processor`), so they must be
    neutral: the processor already did temperature and truncation. Explicit values are needed
    because the model's generation_config (e.g. a hub checkpoint's top_k=20, top_p=0.8,
    repetition_penalty=1.05) fills in anything left as None. A repetition penalty (or any other
    built-in processor) would run BEFORE the CUTS processor and change the set, hence 1.0.
    """
    return dict(do_sample=True, temperature=1.0, top_k=0, top_p=1.0, min_p=None, typical_p=1.0,
                epsilon_cutoff=0.0, eta_cutoff=0.0, top_h=None, repetition_penalty=1.0,
                num_beams=1)


class CUTSLogitsProcessor(LogitsProcessor):
    """HF logits processor: scores = 0 on the CUTS set, -inf elsewhere.

    Use with ``model.generate(..., logits_processor=[proc], **hf_cuts_generate_kwargs())`` so that
    HF's multinomial draw is uniform over the set computed from the ORIGINAL scores.

    `cuts_rows` (Bool [rows] or None = every row) makes one generate call serve a mixed batch:
    the other rows get the standard warped scores ``where(set, scores / temperature, -inf)``,
    which is what HF's own temperature/top-k/top-p/min-p warpers would give (same set semantics,
    see module doc), so the neutral HF kwargs above are right for them too. Rows are the expanded
    batch: with num_return_sequences=n, row r is prompt r // n, sample r % n (see
    `mixed_cuts_rows`).
    """

    def __init__(self, temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0,
                 min_p: float = 0.0, cuts_rows: torch.Tensor | None = None):
        if temperature is None or temperature <= 0:
            raise ValueError("CUTS samples: temperature must be > 0 (use do_sample=True)")
        self.temperature = float(temperature)
        self.top_k = int(top_k or 0)
        self.top_p = 1.0 if top_p is None else float(top_p)
        self.min_p = float(min_p or 0.0)
        self.cuts_rows = None if cuts_rows is None else torch.as_tensor(cuts_rows, dtype=torch.bool)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        mask = truncation_mask(scores, self.temperature, self.top_k, self.top_p, self.min_p)
        uniform = torch.zeros_like(scores).masked_fill(~mask, -math.inf)
        if self.cuts_rows is None:
            return uniform
        if self.cuts_rows.shape != (scores.shape[0],):
            raise ValueError(f"cuts_rows has {self.cuts_rows.numel()} rows, the batch has {scores.shape[0]}")
        standard = (scores / self.temperature).masked_fill(~mask, -math.inf)
        return torch.where(self.cuts_rows.to(scores.device)[:, None], uniform, standard)


def cuts_logprobs_from_scores(scores: torch.Tensor) -> torch.Tensor:
    """-log(#finite) per row of processed CUTS scores ([B, V] one step, or [B, S, V]).

    These are HF's ``output_scores=True`` (``out.scores``: the scores after all processors and
    warpers, which for CUTS rows are 0/-inf); the result is exactly -log(|set|).
    """
    return cuts_logprobs_from_mask(torch.isfinite(scores))


def behaviour_logprobs_from_scores(scores: torch.Tensor, tokens: torch.Tensor,
                                   cuts_rows: torch.Tensor | None = None) -> torch.Tensor:
    """Log-prob of each sampled token under the distribution it was actually drawn from.

    scores: [B, S, V] processed scores (``torch.stack(out.scores, 1)``), tokens: [B, S].
    CUTS rows (all rows when cuts_rows is None): exactly -log(|set|). Other rows:
    log_softmax(processed scores)[token], i.e. the truncated, temperature-scaled distribution.
    """
    lp = torch.log_softmax(scores.float(), -1).gather(2, tokens[..., None]).squeeze(2)
    exact = cuts_logprobs_from_scores(scores)
    if cuts_rows is None:
        return exact
    return torch.where(torch.as_tensor(cuts_rows, dtype=torch.bool, device=lp.device)[:, None], exact, lp)


# ---------------------------------------------------------------------------------------------
# Mixed-CUTS
# ---------------------------------------------------------------------------------------------
def split_mixed(n: int, cuts_fraction: float = 0.5) -> tuple[int, int]:
    """(n_standard, n_cuts) for a group of n.

    n_cuts = round(n * cuts_fraction), halves rounded down (so an odd group gives the extra
    sample to the standard half: 5 -> (3, 2)); when 0 < cuts_fraction < 1 and n >= 2 both halves
    get at least one sample, so every group is really mixed.
    """
    if n < 1:
        raise ValueError(f"group size must be >= 1, got {n}")
    if not 0.0 <= cuts_fraction <= 1.0:
        raise ValueError(f"cuts_fraction must be in [0, 1], got {cuts_fraction}")
    n_cuts = math.ceil(round(n * cuts_fraction, 9) - 0.5)
    if 0.0 < cuts_fraction < 1.0 and n >= 2:
        n_cuts = min(max(n_cuts, 1), n - 1)
    n_cuts = min(max(n_cuts, 0), n)
    return n - n_cuts, n_cuts


def mixed_cuts_rows(num_prompts: int, n: int, cuts_fraction: float = 0.5) -> torch.Tensor:
    """Bool [num_prompts * n]: in each group of n consecutive rows the LAST n_cuts are CUTS.

    This is HF's num_return_sequences expansion order (row r = prompt r // n, sample r % n).
    """
    _, n_cuts = split_mixed(n, cuts_fraction)
    return (torch.arange(n) >= n - n_cuts).repeat(num_prompts)


def _subgroup_stats(r: torch.Tensor, index: torch.Tensor, g: int, unbiased: bool):
    count = torch.zeros(g, dtype=r.dtype).index_add_(0, index, torch.ones_like(r))
    mean = torch.zeros(g, dtype=r.dtype).index_add_(0, index, r) / count.clamp(min=1)
    sq = torch.zeros(g, dtype=r.dtype).index_add_(0, index, (r - mean[index]) ** 2)
    var = sq / ((count - 1) if unbiased else count).clamp(min=1)
    hi = torch.full((g,), -math.inf, dtype=r.dtype).scatter_reduce(0, index, r, "amax")
    lo = torch.full((g,), math.inf, dtype=r.dtype).scatter_reduce(0, index, r, "amin")
    present = count > 0
    return var[present], (hi == lo)[present], mean[present], count[present]


def mixed_group_metrics(rewards: torch.Tensor, group_ids: torch.Tensor, is_cuts: torch.Tensor,
                        unbiased: bool = False) -> dict[str, float]:
    """Intra-group diversity of the standard and CUTS halves of mixed GRPO groups.

    For each half h in {standard, cuts} and for the whole groups ("group"):
      mixed_cuts/<h>/reward_var     mean over groups of the reward variance within that part
                                    (population variance, ddof=0, unless unbiased=True; a part of
                                    one sample has variance 0)
      mixed_cuts/<h>/zero_adv_frac  fraction of groups whose rewards in that part are all equal
                                    (no GRPO signal if the part were a group of its own; a part
                                    of one sample counts as zero-advantage, as in
                                    trainers.advantages.zero_advantage_fraction)
      mixed_cuts/<h>/reward_mean    mean reward of that part's samples
    Groups with no sample in a half don't count for that half; a half absent everywhere gives NaN.
    """
    r = torch.as_tensor(rewards).detach().to(torch.float64).cpu().reshape(-1)
    gids = torch.as_tensor(group_ids).cpu().reshape(-1)
    cuts = torch.as_tensor(is_cuts, dtype=torch.bool).cpu().reshape(-1)
    if not r.shape == gids.shape == cuts.shape:
        raise ValueError("rewards, group_ids and is_cuts must have the same length")
    index, g = group_index(r, gids)
    out: dict[str, float] = {}
    parts = {"standard": ~cuts, "cuts": cuts, "group": torch.ones_like(cuts)}
    for name, sel in parts.items():
        if not bool(sel.any()):
            for key in ("reward_var", "zero_adv_frac", "reward_mean"):
                out[f"mixed_cuts/{name}/{key}"] = float("nan")
            continue
        var, flat, _, _ = _subgroup_stats(r[sel], index[sel], g, unbiased)
        out[f"mixed_cuts/{name}/reward_var"] = var.mean().item()
        out[f"mixed_cuts/{name}/zero_adv_frac"] = flat.double().mean().item()
        out[f"mixed_cuts/{name}/reward_mean"] = r[sel].mean().item()
    return out

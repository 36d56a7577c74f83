"""transformers `generate` backend: the portable rollout engine.

Returns, per prompt, n samples with response token ids, the behaviour logprob
of each sampled token (log-softmax of the raw logits at the sampling
temperature, the same quantity the learner recomputes) and decoded text.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from actors.weights import is_tied_copy
from trainers.cuts import CUTSLogitsProcessor, behaviour_logprobs_from_scores, hf_cuts_generate_kwargs, mixed_cuts_rows
from trainers.models import load_causal_lm, load_tokenizer


@dataclass
class Sample:
    response_ids: list[int]
    logprobs: list[float]
    text: str
    finish_reason: str  # "stop" (eos or stop string) | "length"
    cuts: bool = False  # sampled uniformly from the truncation set (CUTS); logprobs are then log 1/|set|


class HFBackend:
    def __init__(self, model_path: str, dtype: str = "float32", device: str = "cpu"):
        self.tokenizer = load_tokenizer(model_path)
        self.model = load_causal_lm(model_path, dtype).to(device).eval()
        self.device = device

    def named_parameters(self) -> dict[str, torch.Tensor]:
        return dict(self.model.state_dict())

    @torch.no_grad()
    def load_weights(self, state: dict[str, torch.Tensor]) -> None:
        own = self.model.state_dict()
        missing = [k for k in own if k not in state and not is_tied_copy(self.model, k)]
        unknown = [k for k in state if k not in own]
        if missing or unknown:
            raise ValueError(f"weights do not match the model: missing {missing[:5]}, unknown {unknown[:5]}")
        for name, tensor in state.items():
            own[name].copy_(tensor)

    @torch.no_grad()
    def generate(self, prompts: list[list[int]], sampling, seed: int) -> list[list[Sample]]:
        tok = self.tokenizer
        pad = tok.pad_token_id
        width = max(len(p) for p in prompts)
        ids = torch.full((len(prompts), width), pad, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for i, p in enumerate(prompts):  # left padding so every row ends at the same column
            ids[i, width - len(p):] = torch.tensor(p)
            mask[i, width - len(p):] = 1
        greedy = sampling.temperature <= 0
        kwargs = dict(
            max_new_tokens=sampling.max_new_tokens, num_return_sequences=sampling.n,
            do_sample=not greedy, pad_token_id=pad, eos_token_id=tok.eos_token_id,
            return_dict_in_generate=True, output_logits=True,
        )
        cuts_rows = None
        if not greedy and sampling.cuts_fraction > 0:  # CUTS / Mixed-CUTS rows of each group
            cuts_rows = mixed_cuts_rows(len(prompts), sampling.n, sampling.cuts_fraction)
            kwargs.update(hf_cuts_generate_kwargs(), output_scores=True, logits_processor=[CUTSLogitsProcessor(
                sampling.temperature, sampling.top_k, sampling.top_p, sampling.min_p, cuts_rows=cuts_rows)])
        elif not greedy:
            kwargs.update(temperature=sampling.temperature, top_p=sampling.top_p,
                          top_k=sampling.top_k or None, min_p=sampling.min_p or None)
        if sampling.stop:
            kwargs.update(stop_strings=list(sampling.stop), tokenizer=tok)
        torch.manual_seed(seed)
        out = self.model.generate(input_ids=ids.to(self.device), attention_mask=mask.to(self.device), **kwargs)
        new = out.sequences[:, width:].cpu()
        temp = 1.0 if greedy else sampling.temperature
        if cuts_rows is not None:  # the actual sampling distribution of each row
            scores = torch.stack(out.scores, dim=1).float().cpu()
            logprobs = behaviour_logprobs_from_scores(scores, new[:, :scores.shape[1]], cuts_rows)
        else:
            logits = torch.stack(out.logits, dim=1).float().cpu() / temp  # [B*n, steps, V]
            logprobs = torch.gather(torch.log_softmax(logits, -1), 2, new[:, :logits.shape[1], None]).squeeze(2)
        results: list[list[Sample]] = [[] for _ in prompts]
        for row in range(new.shape[0]):
            toks = new[row].tolist()
            length, reason = len(toks), "length"
            if tok.eos_token_id in toks:
                length, reason = toks.index(tok.eos_token_id) + 1, "stop"
            text = tok.decode(toks[:length], skip_special_tokens=True)
            for s in sampling.stop:  # a stop string ends generation; keep the tokens, cut the text
                if s in text:
                    text, reason = text[:text.index(s)], "stop"
            results[row // sampling.n].append(
                Sample(toks[:length], logprobs[row, :length].tolist(), text, reason,
                       cuts=bool(cuts_rows[row]) if cuts_rows is not None else False))
        return results

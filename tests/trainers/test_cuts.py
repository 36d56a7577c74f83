"""CUTS: the candidate set, uniform sampling over it, the HF processor, Mixed-CUTS metrics (vLLM: tests/actors)."""
import math

import pytest
import torch

from trainers.cuts import (
    CUTSLogitsProcessor,
    behaviour_logprobs_from_scores,
    cuts_logprobs_from_logits,
    cuts_logprobs_from_scores,
    cuts_sample,
    hf_cuts_generate_kwargs,
    mixed_cuts_rows,
    mixed_group_metrics,
    split_mixed,
    truncation_mask,
)


def chi2_critical_999(df: int) -> float:
    """Upper 0.1% point of chi-square(df) by the Wilson-Hilferty approximation (no scipy here).

    z_{0.999} = 3.090232. Reference values (scipy.stats.chi2.ppf(0.999, df)): df=5: 20.515,
    df=9: 27.877, df=19: 43.820, df=29: 58.301 -- checked in test_chi2_critical_values.
    """
    z = 3.090232
    a = 2.0 / (9.0 * df)
    return df * (1.0 - a + z * math.sqrt(a)) ** 3


def chi2_stat(counts: torch.Tensor, expected: torch.Tensor) -> float:
    counts, expected = counts.double(), expected.double()
    return float(((counts - expected) ** 2 / expected).sum())


def test_chi2_critical_values():
    for df, ref in [(5, 20.515), (9, 27.877), (19, 43.820), (29, 58.301)]:
        assert chi2_critical_999(df) == pytest.approx(ref, rel=0.02)  # WH errs ~1% high at small df


def probs_logits(*probs):
    """One row of logits whose softmax is exactly the given probabilities (up to float)."""
    return torch.tensor([probs], dtype=torch.float64).log().float()


def kept(mask: torch.Tensor) -> set[int]:
    assert mask.shape[0] == 1
    return set(torch.nonzero(mask[0]).flatten().tolist())


# ----------------------------------------------------------------------------- truncation_mask
def test_top_k_hand_examples():
    assert kept(truncation_mask(torch.tensor([[3.0, 1.0, 2.0, 0.0]]), top_k=2)) == {0, 2}
    assert kept(truncation_mask(torch.tensor([[3.0, 1.0, 2.0, 0.0]]), top_k=1)) == {0}
    # ties at the boundary are all kept (as HF's TopKLogitsWarper and vLLM do)
    assert kept(truncation_mask(torch.tensor([[1.0, 2.0, 2.0, 0.0]]), top_k=1)) == {1, 2}
    assert kept(truncation_mask(torch.tensor([[2.0, 2.0, 2.0, 0.0]]), top_k=2)) == {0, 1, 2}
    # 0 / >= V is off
    assert kept(truncation_mask(torch.tensor([[3.0, 1.0, 2.0, 0.0]]), top_k=0)) == {0, 1, 2, 3}
    assert kept(truncation_mask(torch.tensor([[3.0, 1.0, 2.0, 0.0]]), top_k=9)) == {0, 1, 2, 3}
    # top-k does not depend on the temperature
    assert kept(truncation_mask(torch.tensor([[3.0, 1.0, 2.0, 0.0]]), temperature=7.0, top_k=2)) == {0, 2}


def test_top_p_hand_examples():
    row = probs_logits(0.15, 0.5, 0.1, 0.25)  # sorted: 1 (.5), 3 (.25), 0 (.15), 2 (.1)
    assert kept(truncation_mask(row, top_p=0.3)) == {1}
    assert kept(truncation_mask(row, top_p=0.6)) == {1, 3}
    assert kept(truncation_mask(row, top_p=0.74)) == {1, 3}
    assert kept(truncation_mask(row, top_p=0.8)) == {1, 3, 0}
    assert kept(truncation_mask(row, top_p=0.95)) == {0, 1, 2, 3}
    assert kept(truncation_mask(row, top_p=1.0)) == {0, 1, 2, 3}
    # always at least one token: the most probable one
    assert kept(truncation_mask(row, top_p=0.01)) == {1}
    assert kept(truncation_mask(row, top_p=0.0)) == {1}
    # one token holding almost all the mass
    assert kept(truncation_mask(probs_logits(0.01, 0.97, 0.01, 0.01), top_p=0.9)) == {1}
    # ties at the top-p boundary are all kept
    tie = probs_logits(0.2, 0.4, 0.2, 0.2)
    assert kept(truncation_mask(tie, top_p=0.5)) == {0, 1, 2, 3}
    assert kept(truncation_mask(tie, top_p=0.3)) == {1}


def test_min_p_hand_examples():
    row = probs_logits(0.15, 0.5, 0.1, 0.25)
    assert kept(truncation_mask(row, min_p=0.4)) == {1, 3}  # >= 0.2
    assert kept(truncation_mask(row, min_p=0.25)) == {0, 1, 3}  # >= 0.125
    assert kept(truncation_mask(row, min_p=0.1)) == {0, 1, 2, 3}  # >= 0.05
    assert kept(truncation_mask(row, min_p=1.0)) == {1}
    assert kept(truncation_mask(row, min_p=0.0)) == {0, 1, 2, 3}


def test_temperature_changes_top_p_and_min_p():
    row = torch.tensor([[2.0, 1.0, 0.0, -1.0]])
    # T=1: probs .644 .237 .087 .032 (cum .644 .881 .968)
    assert kept(truncation_mask(row, 1.0, top_p=0.9)) == {0, 1, 2}
    # T=0.5: logits 4 2 0 -2 -> probs .865 .117 .016 .002
    assert kept(truncation_mask(row, 0.5, top_p=0.9)) == {0, 1}
    # T=2: logits 1 .5 0 -.5 -> probs .455 .276 .167 .102 (cum of three .898 < .9)
    assert kept(truncation_mask(row, 2.0, top_p=0.9)) == {0, 1, 2, 3}
    # min-p ratios exp((l_i - l_max) / T): T=1: 1 .37 .14 .05; T=2: 1 .61 .37 .22; T=.5: 1 .14 ...
    assert kept(truncation_mask(row, 1.0, min_p=0.2)) == {0, 1}
    assert kept(truncation_mask(row, 2.0, min_p=0.2)) == {0, 1, 2, 3}
    assert kept(truncation_mask(row, 0.5, min_p=0.2)) == {0}
    # temperature <= 0: the argmax (ties included)
    assert kept(truncation_mask(row, 0.0, top_p=0.9)) == {0}
    assert kept(truncation_mask(torch.tensor([[1.0, 3.0, 3.0]]), 0.0)) == {1, 2}


def test_combinations_apply_in_order_with_renormalisation():
    row = torch.tensor([[2.0, 1.0, 0.0, -1.0]])
    # top-k=3 then top-p on the renormalised 3 tokens: .665 .245 .090 -> cum .665 .910 -> 2 tokens
    assert kept(truncation_mask(row, top_k=3, top_p=0.9)) == {0, 1}
    assert kept(truncation_mask(row, top_p=0.9)) == {0, 1, 2}  # without top-k: 3 tokens
    # + min-p .5: ratio of token 1 is e^-1 = .37 -> out
    assert kept(truncation_mask(row, top_k=3, top_p=0.9, min_p=0.5)) == {0}
    # + temperature 2: top-k=3 renormalised probs .506 .307 .186 -> top-p .7 keeps 2, min-p .5 keeps both
    assert kept(truncation_mask(row, 2.0, top_k=3, top_p=0.7, min_p=0.5)) == {0, 1}
    assert kept(truncation_mask(row, 2.0, top_k=3, top_p=0.7, min_p=0.7)) == {0}
    # no truncation at all: the whole vocabulary
    assert kept(truncation_mask(row)) == {0, 1, 2, 3}


def test_masked_tokens_and_per_row_parameters():
    row = torch.tensor([[0.0, -math.inf, 0.0, -math.inf, float("nan")]])
    assert kept(truncation_mask(row)) == {0, 2}
    assert kept(truncation_mask(row, top_k=4)) == {0, 2}
    assert kept(truncation_mask(row, 1.0, None, None, None)) == {0, 2}  # None = off
    assert not truncation_mask(torch.full((1, 3), -math.inf)).any()
    logits = torch.tensor([[2.0, 1.0, 0.0, -1.0]] * 3)
    mask = truncation_mask(logits, torch.tensor([1.0, 0.5, 1.0]), torch.tensor([2, 0, 0]),
                           torch.tensor([1.0, 0.9, 1.0]), torch.tensor([0.0, 0.0, 0.2]))
    assert mask.tolist() == [[True, True, False, False], [True, True, False, False],
                             [True, True, False, False]]
    half = truncation_mask(logits.half(), top_k=2)
    assert half.dtype == torch.bool and half.sum().item() == 6


@pytest.mark.parametrize("temperature", [0.7, 1.0, 1.5])
def test_matches_hf_warpers_on_random_logits(temperature):
    from transformers.generation.logits_process import (
        MinPLogitsWarper,
        TemperatureLogitsWarper,
        TopKLogitsWarper,
        TopPLogitsWarper,
    )

    torch.manual_seed(0)
    logits = torch.randn(64, 100) * 3
    for top_k in (0, 5, 40):
        for top_p in (1.0, 0.9, 0.5):
            for min_p in (0.0, 0.05):
                scores = TemperatureLogitsWarper(temperature)(None, logits.clone())
                if top_k:
                    scores = TopKLogitsWarper(top_k)(None, scores)
                if top_p < 1:
                    scores = TopPLogitsWarper(top_p)(None, scores)
                if min_p:
                    scores = MinPLogitsWarper(min_p)(None, scores)
                ours = truncation_mask(logits, temperature, top_k, top_p, min_p)
                assert torch.equal(ours, torch.isfinite(scores)), (top_k, top_p, min_p)


def test_fast_path_agrees_with_the_general_path():
    torch.manual_seed(2)
    logits = torch.randn(32, 200) * 2
    logits[:, :3] = logits[:, 3:4]  # some exact ties
    logits[0, 10:] = -math.inf
    B = logits.shape[0]
    for temperature in (0.5, 1.0, 2.0):
        for top_k in (0, 1, 4, 50, 500):
            for min_p in (0.0, 0.1):
                fast = truncation_mask(logits, temperature, top_k, 1.0, min_p)  # scalars, no top-p: no sort
                general = truncation_mask(logits, torch.full((B,), temperature), torch.full((B,), top_k),
                                          torch.ones(B), torch.full((B,), min_p))
                assert torch.equal(fast, general), (temperature, top_k, min_p)


# ----------------------------------------------------------------------------- cuts_sample
def test_cuts_sample_is_uniform_over_exactly_the_set():
    torch.manual_seed(1)
    row = torch.randn(1, 40) * 2
    cfg = dict(temperature=0.8, top_k=25, top_p=0.95, min_p=0.01)
    mask = truncation_mask(row, **cfg)[0]
    size = int(mask.sum())
    assert 5 <= size < 25  # a real truncation, not the whole vocabulary
    draws = 20000
    g = torch.Generator().manual_seed(1234)
    tokens, logprobs = cuts_sample(row.expand(draws, -1), **cfg, generator=g)
    counts = torch.bincount(tokens, minlength=40)
    assert counts[~mask].sum() == 0
    assert (counts[mask] > 0).all()
    stat = chi2_stat(counts[mask], torch.full((size,), draws / size))
    assert stat < chi2_critical_999(size - 1), stat
    # the recorded behaviour logprob is exactly -log |set|
    assert logprobs.dtype == torch.float32
    assert torch.equal(logprobs, torch.full((draws,), -math.log(size), dtype=torch.float32))
    # power check: standard (softmax) sampling over the same set is far from uniform
    probs = torch.softmax(row[0] / 0.8, -1) * mask
    std = torch.multinomial(probs / probs.sum(), draws, replacement=True, generator=g)
    std_counts = torch.bincount(std, minlength=40)[mask]
    assert chi2_stat(std_counts, torch.full((size,), draws / size)) > 10 * chi2_critical_999(size - 1)


def test_cuts_sample_rows_logprobs_and_seed():
    logits = torch.tensor([[2.0, 1.0, 0.0, -1.0], [0.0, 0.0, 0.0, 0.0], [5.0, -math.inf, 0.0, 0.0]])
    t1, lp = cuts_sample(logits, top_k=2, generator=torch.Generator().manual_seed(3))
    t2, _ = cuts_sample(logits, top_k=2, generator=torch.Generator().manual_seed(3))
    assert torch.equal(t1, t2)
    assert t1[0].item() in (0, 1) and t1[2].item() in (0, 2, 3)
    assert torch.equal(lp, torch.tensor([-math.log(2), -math.log(4), -math.log(3)], dtype=torch.float32))
    with pytest.raises(ValueError):
        cuts_sample(torch.full((1, 3), -math.inf))
    # the logprob helpers agree, also per step
    assert torch.equal(cuts_logprobs_from_logits(logits, top_k=2), lp)
    steps = torch.stack([logits, logits], 1)
    assert torch.equal(cuts_logprobs_from_logits(steps, top_k=torch.tensor([2, 2, 2])), torch.stack([lp, lp], 1))


def test_no_truncation_is_uniform_over_the_vocabulary():
    row = torch.randn(1, 7)
    tokens, lp = cuts_sample(row.expand(7000, -1), generator=torch.Generator().manual_seed(0))
    counts = torch.bincount(tokens, minlength=7)
    assert chi2_stat(counts, torch.full((7,), 1000.0)) < chi2_critical_999(6)
    assert torch.equal(lp, torch.full((7000,), -math.log(7), dtype=torch.float32))


# ----------------------------------------------------------------------------- HF generate
@pytest.fixture(scope="module")
def tiny_llama():
    from transformers import AutoModelForCausalLM, LlamaConfig

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=50, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=64, pad_token_id=0, eos_token_id=1, bos_token_id=None)
    model = AutoModelForCausalLM.from_config(config).eval()
    with torch.no_grad():  # peakier logits, so that top-p/min-p truncate something
        model.lm_head.weight.mul_(15.0)
    # A hub-like generation_config with non-neutral sampling defaults: the recommended kwargs
    # must override every one of them.
    gc = model.generation_config
    gc.do_sample, gc.temperature, gc.top_k, gc.top_p, gc.min_p = True, 0.3, 3, 0.5, 0.2
    gc.repetition_penalty = 1.5
    return model


def first_step(model, prompt, rows, proc, **extra):
    ids = torch.tensor([prompt] * rows)
    torch.manual_seed(0)
    with torch.no_grad():
        out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=1,
                             logits_processor=[proc], pad_token_id=0, eos_token_id=None,
                             return_dict_in_generate=True, output_scores=True, output_logits=True,
                             **hf_cuts_generate_kwargs(), **extra)
    return out.sequences[:, len(prompt)], out.scores[0], out.logits[0]


@pytest.mark.parametrize("cfg", [dict(temperature=0.7, top_k=0, top_p=0.9, min_p=0.0),
                                 dict(temperature=1.3, top_k=20, top_p=0.95, min_p=0.05)])
def test_hf_generate_samples_uniformly_over_the_set(tiny_llama, cfg):
    prompt = [5, 17, 33, 8]
    with torch.no_grad():
        logits = tiny_llama(torch.tensor([prompt])).logits[:, -1].float()
    mask = truncation_mask(logits, **cfg)[0]
    size = int(mask.sum())
    assert 4 <= size <= 40, size
    rows = 4000
    tokens, scores, raw = first_step(tiny_llama, prompt, rows, CUTSLogitsProcessor(**cfg))
    # the set computed inside generate (batched forward) is the one from the model's own logits
    assert torch.equal(torch.isfinite(scores), mask.expand(rows, -1))
    assert torch.equal(truncation_mask(raw.float(), **cfg), mask.expand(rows, -1))
    counts = torch.bincount(tokens, minlength=50)
    assert counts[~mask].sum() == 0
    stat = chi2_stat(counts[mask], torch.full((size,), rows / size))
    assert stat < chi2_critical_999(size - 1), stat
    # behaviour logprobs recorded from the processed scores (or from the raw logits)
    expected = torch.full((rows,), -math.log(size), dtype=torch.float32)
    assert torch.equal(cuts_logprobs_from_scores(scores), expected)
    assert torch.equal(cuts_logprobs_from_logits(raw, **cfg), expected)
    assert torch.equal(behaviour_logprobs_from_scores(scores[:, None], tokens[:, None])[:, 0], expected)


def test_hf_generate_mixed_rows(tiny_llama):
    cfg = dict(temperature=1.0, top_k=0, top_p=0.95, min_p=0.0)
    prompt = [9, 2, 40]
    with torch.no_grad():
        logits = tiny_llama(torch.tensor([prompt])).logits[:, -1].float()
    mask = truncation_mask(logits, **cfg)[0]
    size = int(mask.sum())
    n, half = 4000, 2000
    cuts_rows = mixed_cuts_rows(1, n, 0.5)
    assert cuts_rows.sum() == half and not cuts_rows[:half].any()
    tokens, scores, _ = first_step(tiny_llama, [9, 2, 40], 1, CUTSLogitsProcessor(**cfg, cuts_rows=cuts_rows),
                                   num_return_sequences=n)
    assert torch.isfinite(scores).eq(mask).all()
    cuts_counts = torch.bincount(tokens[cuts_rows], minlength=50)
    std_counts = torch.bincount(tokens[~cuts_rows], minlength=50)
    assert cuts_counts[~mask].sum() == 0 and std_counts[~mask].sum() == 0
    crit = chi2_critical_999(size - 1)
    assert chi2_stat(cuts_counts[mask], torch.full((size,), half / size)) < crit
    # standard rows: the truncated softmax at the temperature (what HF's own warpers would give)
    p = torch.softmax(logits[0] / cfg["temperature"], -1) * mask
    p = p / p.sum()
    big = p[mask] * half >= 5  # chi-square needs expected counts >= 5
    obs, exp = std_counts[mask][big], half * p[mask][big]
    if not big.all():  # lump the rare tokens into one cell
        obs = torch.cat([obs, std_counts[mask][~big].sum()[None]])
        exp = torch.cat([exp, half * p[mask][~big].sum()[None]])
    assert chi2_stat(obs, exp) < chi2_critical_999(len(obs) - 1)
    lp = behaviour_logprobs_from_scores(scores[:, None], tokens[:, None], cuts_rows)[:, 0]
    assert torch.equal(lp[cuts_rows], torch.full((half,), -math.log(size), dtype=torch.float32))
    assert torch.allclose(lp[~cuts_rows], p[tokens[~cuts_rows]].log().float(), atol=1e-4)


def test_hf_processor_checks():
    with pytest.raises(ValueError):
        CUTSLogitsProcessor(temperature=0.0)
    proc = CUTSLogitsProcessor(top_k=2, cuts_rows=torch.tensor([True, False]))
    with pytest.raises(ValueError):
        proc(None, torch.zeros(3, 5))
    out = proc(None, torch.tensor([[3.0, 2.0, 1.0], [3.0, 2.0, 1.0]]))
    assert out.tolist() == [[0.0, 0.0, -math.inf], [3.0, 2.0, -math.inf]]


# ----------------------------------------------------------------------------- Mixed-CUTS
def test_split_mixed():
    assert split_mixed(4) == (2, 2)
    assert split_mixed(5) == (3, 2)
    assert split_mixed(3) == (2, 1)
    assert split_mixed(2) == (1, 1)
    assert split_mixed(1) == (1, 0)
    assert split_mixed(8, 0.25) == (6, 2)
    assert split_mixed(10, 0.35) == (7, 3)
    assert split_mixed(4, 0.0) == (4, 0)
    assert split_mixed(4, 1.0) == (0, 4)
    assert split_mixed(4, 0.1) == (3, 1)  # mixed groups stay mixed
    assert split_mixed(4, 0.9) == (1, 3)
    for bad in [(0, 0.5), (4, -0.1), (4, 1.5)]:
        with pytest.raises(ValueError):
            split_mixed(*bad)
    assert mixed_cuts_rows(2, 4).tolist() == [False, False, True, True] * 2
    assert mixed_cuts_rows(1, 3).tolist() == [False, False, True]


def test_mixed_group_metrics_by_hand():
    # group 7: standard [1, 0], cuts [1, 1]; group 3: standard [0, 0], cuts [1, 0];
    # group 11: standard [.5, .5], cuts [0, 1]  (rows shuffled on purpose)
    rows = [(7, False, 1.0), (3, True, 1.0), (11, False, 0.5), (7, True, 1.0), (3, False, 0.0),
            (11, True, 0.0), (7, False, 0.0), (3, False, 0.0), (11, True, 1.0), (7, True, 1.0),
            (3, True, 0.0), (11, False, 0.5)]
    gids = torch.tensor([r[0] for r in rows])
    is_cuts = torch.tensor([r[1] for r in rows])
    rewards = torch.tensor([r[2] for r in rows])
    m = mixed_group_metrics(rewards, gids, is_cuts)
    # population variances: standard .25, 0, 0; cuts 0, .25, .25; whole .1875, .1875, .125
    assert m["mixed_cuts/standard/reward_var"] == pytest.approx(0.25 / 3)
    assert m["mixed_cuts/cuts/reward_var"] == pytest.approx(0.5 / 3)
    assert m["mixed_cuts/group/reward_var"] == pytest.approx(0.5 / 3)
    assert m["mixed_cuts/standard/zero_adv_frac"] == pytest.approx(2 / 3)
    assert m["mixed_cuts/cuts/zero_adv_frac"] == pytest.approx(1 / 3)
    assert m["mixed_cuts/group/zero_adv_frac"] == 0.0
    assert m["mixed_cuts/standard/reward_mean"] == pytest.approx(1 / 3)
    assert m["mixed_cuts/cuts/reward_mean"] == pytest.approx(2 / 3)
    unbiased = mixed_group_metrics(rewards, gids, is_cuts, unbiased=True)
    assert unbiased["mixed_cuts/standard/reward_var"] == pytest.approx(0.5 / 3)
    assert unbiased["mixed_cuts/group/reward_var"] == pytest.approx((0.25 + 0.25 + 1 / 6) / 3)
    # no CUTS rows at all: that half is NaN, the rest is still computed
    none = mixed_group_metrics(rewards, gids, torch.zeros_like(is_cuts))
    assert math.isnan(none["mixed_cuts/cuts/reward_var"])
    assert none["mixed_cuts/standard/reward_var"] == pytest.approx(m["mixed_cuts/group/reward_var"])
    with pytest.raises(ValueError):
        mixed_group_metrics(rewards, gids[:-1], is_cuts)

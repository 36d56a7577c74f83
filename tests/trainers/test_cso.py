"""CSO pieces by hand: steps cut the sampled ids, candidates, the pair filter, pairs scored on the step only."""
import pytest

from trainers.batch import collate_pairs
from trainers.cso import critical_candidates, keep_pair, monte_carlo_value, split_steps, step_pair
from trainers.models import build_char_tokenizer


@pytest.fixture(scope="module")
def tok():
    return build_char_tokenizer()


def _text(tok, ids, spans):
    return [tok.decode(ids[a:b]) for a, b in spans]


def test_steps_cover_the_ids_and_end_where_the_separator_ends(tok):
    ids = tok("x = 2\n\ny = x + 3\nanswer: 5", add_special_tokens=False).input_ids
    spans = split_steps(ids, tok)
    assert _text(tok, ids, spans) == ["x = 2\n", "\ny = x + 3\n", "answer: 5"]  # a blank line joins the next step
    assert spans[0][0] == 0 and spans[-1][1] == len(ids) and all(a[1] == b[0] for a, b in zip(spans, spans[1:]))
    marked = tok("Step 1: add. Step 2: halve.", add_special_tokens=False).input_ids
    assert _text(tok, marked, split_steps(marked, tok, separator=". ")) == ["Step 1: add. ", "Step 2: halve."]
    trailing = tok("a\nb\n\n", add_special_tokens=False).input_ids
    assert _text(tok, trailing, split_steps(trailing, tok)) == ["a\n", "b\n\n"]
    assert split_steps([], tok) == []
    with pytest.raises(ValueError, match="separator"):
        split_steps(ids, tok, separator="")


def test_steps_on_a_subword_tokenizer_keep_the_sampled_ids():
    import os
    from types import SimpleNamespace

    from trainers.models import load_tokenizer, prepare_model

    tok = load_tokenizer(prepare_model(SimpleNamespace(name="smollm2", cache_dir=os.environ["EVOFORGE_CACHE"])))
    ids = tok("First, 12 * 3 = 36.\nThen 36 + 4 = 40.\nSo the answer is 40.", add_special_tokens=False).input_ids
    spans = split_steps(ids, tok)
    assert len(spans) == 3 and [i for a, b in spans for i in ids[a:b]] == ids
    assert _text(tok, ids, spans)[1].strip() == "Then 36 + 4 = 40."


def test_candidates_are_the_lowest_scored_steps():
    assert critical_candidates([0.9, 0.2, 0.5, 0.2, 0.7], 2) == [1, 3]  # ties: the earlier step first
    assert critical_candidates([0.9, 0.2], 5) == [1, 0] and critical_candidates([0.3], 0) == []
    with pytest.raises(ValueError):
        critical_candidates([0.1], -1)


@pytest.mark.parametrize("chosen, rejected, succeeded, kept", [
    (0.6, 0.5, True, True),     # both thresholds met exactly
    (0.59, 0.1, True, False),   # the alternative scores too low
    (0.9, 0.51, True, False),   # the original step scores too high to be the mistake
    (0.9, 0.1, False, False),   # the policy could not finish from the alternative
])
def test_pairs_are_kept_only_when_the_continuation_succeeds_and_the_prm_agrees(chosen, rejected, succeeded, kept):
    assert keep_pair(chosen, rejected, succeeded) is kept


def test_step_pairs_score_only_the_differing_steps():
    prompt, prefix = [5, 6, 7], [8, 9]
    chosen, rejected = step_pair(prompt, prefix, [20, 21], [30, 31, 32], pair_id=4, continuation=[40, 41, 42])
    assert chosen.prompt_ids == rejected.prompt_ids == [5, 6, 7, 8, 9]
    assert chosen.loss_mask == [1, 1, 0, 0, 0] and rejected.loss_mask == [1, 1, 1]
    batch = collate_pairs([chosen, rejected], pad_id=0)
    assert batch.unit == 2 and batch.loss_mask.sum().item() == 5  # 2 chosen + 3 rejected step tokens
    assert batch.input_ids[0, 5:7].tolist() == [20, 21] and batch.input_ids[1, 5:8].tolist() == [30, 31, 32]
    with pytest.raises(ValueError, match="equals the original"):
        step_pair(prompt, prefix, [1], [1], 0)


def test_monte_carlo_value_is_the_success_fraction():
    assert monte_carlo_value([1.0, 0.0, 1.0, 0.5]) == 0.5
    with pytest.raises(ValueError):
        monte_carlo_value([])


def test_the_dpo_loss_on_a_step_pair_ignores_the_continuation(tiny_model_path):
    """The DPO loss and its gradient are the same whatever continuation follows the chosen step (mask 0), and
    change when the chosen step itself changes."""
    import torch

    from trainers.models import load_causal_lm
    from trainers.objectives import LossSettings, get_objective

    model = load_causal_lm(tiny_model_path)
    ref = load_causal_lm(tiny_model_path).requires_grad_(False)
    with torch.no_grad():
        for p in ref.parameters():
            p.mul_(1.05)
    dpo = get_objective("dpo")

    def loss_and_grad(chosen_step, continuation):
        model.zero_grad()
        pair = step_pair([5, 6, 7], [8, 9], chosen_step, [30, 31, 32], 0, continuation=continuation)
        loss, _ = dpo.loss(model, dpo.collate(pair, 0), LossSettings(), None, 1.0, ref_model=ref)
        loss.backward()
        return loss.item(), torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])

    a_loss, a_grad = loss_and_grad([20, 21], [40, 41, 42])
    b_loss, b_grad = loss_and_grad([20, 21], [50, 51])
    c_loss, _ = loss_and_grad([20, 22], [40, 41, 42])
    assert a_loss == pytest.approx(b_loss, abs=1e-6) and torch.allclose(a_grad, b_grad, atol=1e-6)
    assert abs(a_loss - c_loss) > 1e-5

import math

import torch

from trainers.logprobs import entropy_from_logits, token_logprobs


def test_hand_computed_with_temperature():
    # position 0 logits [0, ln 3]: softmax = [1/4, 3/4]; target id 1 -> log(0.75) = -0.2876821
    # at temperature 0.5 the logits become [0, 2 ln 3] -> softmax [1/10, 9/10] -> log(0.9) = -0.1053605
    logits = torch.tensor([[[0.0, math.log(3.0)], [5.0, -5.0]]], requires_grad=True)
    ids = torch.tensor([[0, 1]])
    out = token_logprobs(logits, ids)
    torch.testing.assert_close(out, torch.tensor([[-0.2876821]]))
    torch.testing.assert_close(token_logprobs(logits, ids, temperature=0.5), torch.tensor([[-0.1053605]]))
    # d log p_1 / d logits = onehot(1) - p = [-0.25, 0.25]; the last position predicts nothing -> 0
    out.sum().backward()
    torch.testing.assert_close(logits.grad, torch.tensor([[[-0.25, 0.25], [0.0, 0.0]]]))


def test_matches_log_softmax_gather_random():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 6, 11, generator=g) * 3
    ids = torch.randint(0, 11, (3, 6), generator=g)
    for temp in (1.0, 0.7):
        ref = torch.log_softmax(logits[:, :-1] / temp, -1).gather(-1, ids[:, 1:, None]).squeeze(-1)
        torch.testing.assert_close(token_logprobs(logits, ids, temperature=temp), ref)
    # 0.7 really changes the values (guards against the temperature being ignored)
    assert not torch.allclose(token_logprobs(logits, ids, 0.7), token_logprobs(logits, ids, 1.0))


def test_long_rows_cross_chunks_and_bf16_gives_float32():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(2, 1500, 5, generator=g)  # longer than the 1024-position chunk
    ids = torch.randint(0, 5, (2, 1500), generator=g)
    ref = torch.log_softmax(logits[:, :-1], -1).gather(-1, ids[:, 1:, None]).squeeze(-1)
    torch.testing.assert_close(token_logprobs(logits, ids), ref)
    assert token_logprobs(logits.bfloat16(), ids).dtype == torch.float32


def test_entropy():
    # uniform over 4 -> ln 4 = 1.3862944
    # [0, ln 3] -> p = [1/4, 3/4]: H = 0.25 ln 4 + 0.75 ln(4/3) = 0.3465736 + 0.2157616 = 0.5623352
    logits = torch.tensor([[[0.0, 0.0, 0.0, 0.0], [0.0, math.log(3.0), -math.inf, -math.inf]]])
    torch.testing.assert_close(entropy_from_logits(logits), torch.tensor([[1.3862944, 0.5623352]]))

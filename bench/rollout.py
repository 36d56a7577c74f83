"""Rollout throughput: the vLLM backend against the transformers backend, on equal work.

For each model (tiny, SmolLM2-135M-Instruct) and backend (hf, vllm): the same 8 prompts x n=4 samples x
up to --tokens new tokens at temperature 1, median generated tokens/s over --repeats runs (one warm-up
first), and the median seconds of a weight sync (loading the model's full state dict into the engine).

    python bench/rollout.py [--repeats 3] [--tokens 32] [--models tiny,smollm2] [--backends hf,vllm]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cluster.config.schema import ModelConfig, SamplingConfig  # noqa: E402
from envs.protocol import load_environment  # noqa: E402
from envs.registry import resolve_environment  # noqa: E402
from trainers.models import encode_prompt, load_causal_lm, prepare_model  # noqa: E402


def prompts_for(tokenizer, chat: bool) -> list[list[int]]:
    env = load_environment(resolve_environment("knapsack")[1])
    import random

    texts = [env.prompt(env.sample(random.Random(i), 1)) for i in range(8)]
    return [encode_prompt(tokenizer, t, chat) for t in texts]


def make_backend(name: str, path: str):
    if name == "hf":
        from actors.rollout.hf_backend import HFBackend

        return HFBackend(path, "float32", "cpu")
    from actors.rollout.vllm_backend import VLLMBackend

    return VLLMBackend(path, "float32", "cpu")


def measure(backend, prompts, sampling, repeats: int) -> tuple[float, float]:
    backend.generate(prompts, sampling, seed=0)  # warm-up
    rates = []
    for r in range(repeats):
        start = time.perf_counter()
        out = backend.generate(prompts, sampling, seed=r + 1)
        tokens = sum(len(s.response_ids) for group in out for s in group)
        rates.append(tokens / (time.perf_counter() - start))
    return statistics.median(rates), tokens / len(prompts) / sampling.n


def measure_sync(backend, state, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        backend.load_weights(state)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--tokens", type=int, default=32)
    ap.add_argument("--models", default="tiny,smollm2")
    ap.add_argument("--backends", default="hf,vllm")
    args = ap.parse_args()
    sampling = SamplingConfig(n=4, max_new_tokens=args.tokens, temperature=1.0)
    rows = []
    for model in args.models.split(","):
        cfg = ModelConfig(name=model, chat_template=(model == "smollm2"))
        cfg.cache_dir = os.environ.get("EVOFORGE_CACHE", os.path.expanduser("~/.cache/evoforge"))
        path = prepare_model(cfg)
        state = {k: v for k, v in load_causal_lm(path).state_dict().items()
                 if not (k == "lm_head.weight" and model == "smollm2")}  # tied: never sent
        rates = {}
        for name in args.backends.split(","):
            backend = make_backend(name, path)
            prompts = prompts_for(backend.tokenizer, cfg.chat_template)
            rate, mean_len = measure(backend, prompts, sampling, args.repeats)
            sync = measure_sync(backend, state, args.repeats)
            rates[name] = rate
            rows.append([model, name, f"{rate:.0f}", f"{mean_len:.1f}", f"{sync:.3f}"])
            del backend
        if "hf" in rates and "vllm" in rates:
            rows[-1].append(f"{rates['vllm'] / rates['hf']:.2f}")
    header = ["model", "backend", "tokens/s", "mean tokens/sample", "weight sync s", "vllm/hf"]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(row + [""] * (len(header) - len(row))) + " |")


if __name__ == "__main__":
    main()

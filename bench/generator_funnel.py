"""The generator's gate funnel on fixed prompts: which proposal format a small model can write whole.

For each variant (the examples' seed set, the file opening written for the model, temperature, token budget)
the base model answers the same --prompts generator prompts (two library examples each, drawn with a fixed
seed) --samples times through the vLLM engine, and every proposal meets the gates self-play runs before L4:
parse, L1 (loads in the bubblewrap sandbox), L2 (deterministic, reference scores 1), L3 (not gameable) and
novelty against the library it was shown (the seed set). Prints one table row per variant, counts out of
prompts x samples, and the commonest rejection reasons.

    python bench/generator_funnel.py [--prompts 8] [--samples 4] [--variants puzzles-0.5,starters-0.5,...]

A variant is SEEDSET-TEMPERATURE[-TOKENS][-topics] (topics: each prompt names a task, selfplay.topics); the
file opening is the default job's (selfplay_cpu.yaml).
"""
from __future__ import annotations

import argparse
import collections
import os
import random
import sys
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("VLLM_TARGET_DEVICE", "cpu")
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")
os.environ.setdefault("VLLM_CPU_NUM_OF_RESERVED_CPU", "0")
os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")

from cluster.config.schema import ModelConfig, SamplingConfig  # noqa: E402
from cluster.config.seeds import GENERATOR_HELDOUT  # noqa: E402
from envs.gates import CheckConfig, check_environment  # noqa: E402
from envs.library import sample_prompts  # noqa: E402
from envs.novelty import check_novelty  # noqa: E402
from envs.proposal import extract_source, generator_prompt  # noqa: E402
from envs.registry import seed_environments  # noqa: E402
from trainers.models import encode_prompt, prepare_model  # noqa: E402

PREFIXES = {
    "puzzles": "```python\nimport random\n\n\nclass Env:\n    name = \"",
    "starters": "```python\nimport random\nimport re\n\n\nclass Env:\n    name = \"",
}
# -topics: each prompt names one of these tasks (as selfplay.topics would; the default job sets none)
TOPICS = ["count the vowels in a word", "the sum of the digits of a number", "how many words a sentence has",
          "the remainder when one number is divided by another", "how many numbers in a list are even",
          "the last letter of each word in a list", "convert a number of minutes to hours and minutes",
          "the middle value of three numbers", "repeat a word a given number of times",
          "the number of days in a number of weeks"]
STAGES = ("parse", "L1", "L2", "L3", "novelty")


@dataclass
class Entry:  # what the novelty gate reads of a library environment
    name: str
    source: str
    prompts: list


def funnel(backend, tokenizer, seed_set: str, temperature: float, tokens: int, prompts: int, samples: int,
           pool, topics: list[str] = (), example_chars: int = 900) -> tuple[collections.Counter, collections.Counter]:
    library = [Entry(n, p.read_text(encoding="utf-8"), []) for n, p in seed_environments(seed_set).items()]
    for e in library:
        e.prompts = sample_prompts(e.source, filename=e.name)
    rng, prefix = random.Random(GENERATOR_HELDOUT), PREFIXES[seed_set]  # the generator's held-out prompts' seed
    ids = []
    for _ in range(prompts):
        shown = rng.sample(library, 2)
        topic = rng.choice(topics) if topics else None
        text = generator_prompt([(e.name, e.source) for e in shown], max_chars=example_chars, topic=topic)
        ids.append(encode_prompt(tokenizer, text, True) + tokenizer(prefix, add_special_tokens=False).input_ids)
    out = backend.generate(ids, SamplingConfig(n=samples, max_new_tokens=tokens, temperature=temperature), seed=0)
    counts, reasons = collections.Counter(), collections.Counter()
    check = CheckConfig(seeds_per_difficulty=4, difficulties=[1, 2, 3])
    for i, sample in enumerate(s for group in out for s in group):
        counts["proposals"] += 1
        counts["cut"] += sample.finish_reason == "length"
        source = extract_source(prefix + sample.text)
        if source is None:
            reasons["parse: no code"] += 1
            continue
        counts["parse"] += 1
        results = check_environment(source, pool, check, env_id=f"candidate_{i}")
        if results[0].passed:
            pool.unload(f"candidate_{i}")
        for r in results:
            counts[r.gate] += r.passed
            if not r.passed:
                reasons[f"{r.gate}: {r.reason.split(':')[0][:60]}"] += 1
        if len(results) == 3 and all(r.passed for r in results):
            prompts_ = sample_prompts(source, filename="candidate")
            novel = check_novelty(source, prompts_, library)
            counts["novelty"] += novel.passed
            if not novel.passed:
                reasons[f"novelty: copy of {novel.details.get('most_similar')}"] += 1
    return counts, reasons


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--prompts", type=int, default=8)
    ap.add_argument("--samples", type=int, default=4)
    ap.add_argument("--variants", default="puzzles-0.5-480,starters-0.5-400,starters-0.7-400,starters-0.5-400-topics")
    args = ap.parse_args()
    from actors.rollout.vllm_backend import VLLMBackend
    from envs.sandbox.backends import make_pool
    from transformers import AutoTokenizer

    cfg = ModelConfig(name="smollm2", chat_template=True)
    cfg.cache_dir = os.environ.get("EVOFORGE_CACHE", os.path.expanduser("~/.cache/evoforge"))
    path = str(prepare_model(cfg))
    tokenizer = AutoTokenizer.from_pretrained(path)
    backend = VLLMBackend(path, "float32", "cpu", max_model_len=4096)
    rows = []
    with make_pool("bwrap", 2) as pool:
        for variant in args.variants.split(","):
            seed_set, temperature, *rest = variant.split("-")
            tokens = int(rest[0]) if rest and rest[0].isdigit() else 400
            counts, reasons = funnel(backend, tokenizer, seed_set, float(temperature), tokens, args.prompts,
                                     args.samples, pool, TOPICS if "topics" in rest else ())
            rows.append((variant, counts))
            print(f"{variant}: " + "; ".join(f"{n} {r}" for r, n in reasons.most_common(6)), flush=True)
    backend.close()
    print(f"\n{args.prompts} prompts x {args.samples} samples, SmolLM2-135M-Instruct\n")
    print("| examples-temperature-tokens | " + " | ".join(STAGES) + " | cut at the limit |")
    print("|---|" + "---:|" * (len(STAGES) + 1))
    for variant, c in rows:
        print(f"| {variant} | " + " | ".join(f"{c[s]}/{c['proposals']}" for s in STAGES) + f" | {c['cut']} |")


if __name__ == "__main__":
    main()

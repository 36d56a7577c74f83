"""Model sources: the tiny model and its tokenizer, SmolLM2 converted from its GGUF."""
import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from trainers.models import ModelError, encode_prompt, load_causal_lm, load_tokenizer, prepare_model


def tiny_cfg(cache, **kw):
    base = dict(name="tiny", cache_dir=str(cache), tiny_arch="llama", tiny_hidden=32, tiny_layers=1, tiny_heads=2,
                tiny_kv_heads=1, tiny_intermediate=64, tiny_seed=0)
    base.update(kw)
    return SimpleNamespace(**base)


def test_tiny_model_is_deterministic_and_cached(tmp_path):
    a = prepare_model(tiny_cfg(tmp_path / "a"))
    b = prepare_model(tiny_cfg(tmp_path / "b"))
    c = prepare_model(tiny_cfg(tmp_path / "a", tiny_seed=1))
    sa, sb, sc = (load_causal_lm(p).state_dict() for p in (a, b, c))
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)
    mtime = (Path(a) / "model.safetensors").stat().st_mtime
    assert prepare_model(tiny_cfg(tmp_path / "a")) == a
    assert (Path(a) / "model.safetensors").stat().st_mtime == mtime  # reused, not rebuilt


def test_tiny_tokenizer_keeps_whitespace(tmp_path):
    tok = load_tokenizer(prepare_model(tiny_cfg(tmp_path)))
    text = "Repeat the digit 3 exactly 4 times:\n 3333"
    ids = encode_prompt(tok, text, chat_template=False)
    assert len(ids) == len(text) and tok.decode(ids) == text


def test_bad_model_names(tmp_path):
    with pytest.raises(ModelError, match="without config.json"):
        prepare_model(SimpleNamespace(name=str(tmp_path), cache_dir=str(tmp_path)))
    with pytest.raises(ModelError, match="not 'tiny'"):
        prepare_model(SimpleNamespace(name="./no/such/dir", cache_dir=str(tmp_path)))
    with pytest.raises(ModelError, match="tiny_arch"):
        prepare_model(tiny_cfg(tmp_path, tiny_arch="gpt9"))


def test_smollm2_converted_from_gguf_matches():
    """The converted checkpoint is a plain HF model whose logits equal the GGUF-loaded model's. The pytest
    run's one conversion, in the shared cache that every test loading SmolLM2 uses (a fresh clone's first
    such test converts it)."""
    import os

    from transformers import AutoModelForCausalLM

    from trainers.models import smollm2_package_dir

    folder = prepare_model(SimpleNamespace(name="smollm2", cache_dir=os.environ["EVOFORGE_CACHE"]))
    config = json.loads((Path(folder) / "config.json").read_text())
    assert "quantization_config" not in config and config["model_type"] == "llama"
    model = load_causal_lm(folder)
    assert 134e6 < sum(p.numel() for p in model.parameters()) < 136e6
    pkg = smollm2_package_dir()
    gguf = next(pkg.glob("*.gguf")).name
    reference = AutoModelForCausalLM.from_pretrained(str(pkg), gguf_file=gguf, dtype=torch.float32)
    tok = load_tokenizer(folder)
    ids = torch.tensor([encode_prompt(tok, "What is 17 + 25?", chat_template=True)])
    with torch.no_grad():
        assert torch.allclose(model(ids).logits, reference(ids).logits, atol=1e-4)


def test_fewshot_examples_are_earlier_turns(tmp_path):
    """env.fewshot: solved examples come before the prompt, as chat turns (or plain text without a template)."""
    import os

    tok = load_tokenizer(prepare_model(SimpleNamespace(name="smollm2", cache_dir=os.environ["EVOFORGE_CACHE"])))
    shots = [("What is 1 + 2?", "Answer: 3"), ("What is 4 + 4?", "Answer: 8")]
    plain = tok.decode(encode_prompt(tok, "What is 2 + 5?", chat_template=True))
    text = tok.decode(encode_prompt(tok, "What is 2 + 5?", chat_template=True, shots=shots))
    turns = ("<|im_start|>user\nWhat is 1 + 2?<|im_end|>\n<|im_start|>assistant\nAnswer: 3<|im_end|>\n"
             "<|im_start|>user\nWhat is 4 + 4?<|im_end|>\n<|im_start|>assistant\nAnswer: 8<|im_end|>\n"
             "<|im_start|>user\nWhat is 2 + 5?<|im_end|>\n<|im_start|>assistant\n")
    assert text.endswith(turns) and plain.endswith("<|im_start|>user\nWhat is 2 + 5?<|im_end|>\n"
                                                   "<|im_start|>assistant\n")
    assert text.count("<|im_start|>system") == plain.count("<|im_start|>system") == 1
    tiny = load_tokenizer(prepare_model(tiny_cfg(tmp_path)))
    ids = encode_prompt(tiny, "Repeat 3:", chat_template=False, shots=[("Repeat 1:", "1")])
    assert tiny.decode(ids) == "Repeat 1:\n1\n\nRepeat 3:"


def test_builders_racing_for_one_cache_folder_both_get_a_complete_model(tmp_path):
    """Parallel pytest workers (or actors) preparing the same model: each builds in a private folder and
    renames it into place; the loser's build is dropped, both get the complete folder, nothing half-written."""
    from concurrent.futures import ThreadPoolExecutor

    from trainers.models import build_tiny_model

    folder = tmp_path / "tiny"
    args = ("llama", 32, 1, 2, 1, 64, 0)
    with ThreadPoolExecutor(2) as pool:
        paths = list(pool.map(lambda _: build_tiny_model(folder, *args), range(2)))
    assert paths == [folder, folder]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny"]  # no build folder left behind
    load_causal_lm(str(folder))
    assert load_tokenizer(str(folder)).pad_token_id is not None

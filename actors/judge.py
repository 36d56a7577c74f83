"""Judges as Ray actors, and the pure parsing that reads their answers.

Three kinds, each a plain class (usable without Ray, e.g. in tests) wrapped as a
Ray actor; every one has `ready()` and `judge(requests) -> list[dict]`:

* GenerativeJudge: an LLM served by a rollout backend (`hf` or `vllm`, through
  `actors.rollout_worker.make_backend`), greedy, one completion per request from
  the prompt template filled with the request's fields. Returns {"text": raw}.
* ScalarRewardModel: `AutoModelForSequenceClassification` with one label, on the
  text prompt + response. Returns {"value": float}.
* ProcessRewardModel: the same kind of head on every step prefix (prompt + the
  response up to the end of step i; steps split by a separator); a step's score is
  the sigmoid of its logit. Returns {"steps", "step_scores", "spans", "value"}
  with `spans` the [start, end) character range of each step in the response and
  `value` the lowest step score.

Pure functions (no Ray, no torch): `parse_verdict` (strict: an unreadable answer
is None, never a default), `fill_template`, `split_steps` and
`step_scores_to_tokens`, which spreads step scores over response tokens by their
character offsets. Retries, timeouts and restarts live in `cluster.runtime.judges`.
"""
from __future__ import annotations

import math
import os
import re
import string
from bisect import bisect_right
from dataclasses import dataclass, field

import ray

from envs.proposal import parse_yes_no

PARSE_MODES = ("yes_no", "preference", "score")
KINDS = ("generative", "scalar", "process")

# -- parsing ----------------------------------------------------------------------

_MARKER_AB = re.compile(r"\[\[\s*([AaBb])\s*\]\]")
_PREF_LINE = re.compile(r"^(?:(?:final\s+)?(?:answer|verdict|choice|preference|winner)\s*[:\-]\s*)?"
                        r"(?:(?:response|output|option|assistant|answer)\s*)?[\[(]*\s*([ab])\s*[\])]*$")
_NUMBER = r"([-+]?(?:\d+(?:\.\d*)?|\.\d+))"
_MARKER_SCORE = re.compile(r"\[\[\s*" + _NUMBER + r"\s*\]\]")
_SCORE_LINE = re.compile(r"^(?:(?:final\s+)?(?:score|rating|grade|answer)\s*[:\-=]?\s*)?[\[(]*\s*" + _NUMBER
                         + r"\s*[\])]*\s*(?:(?:/|out\s+of)\s*\d+(?:\.\d*)?)?$")


def _clean_line(line: str) -> str:
    return re.sub(r"[*_`\"']", "", line).strip().rstrip(".!").strip().lower()


def _agreed(values: list):
    """The one value all of `values` agree on, else None (none found, or a contradiction)."""
    distinct = set(values)
    return values[0] if len(distinct) == 1 else None


def parse_preference(text: str) -> str | None:
    """"A" or "B", strictly: `[[A]]` markers (MT-Bench style) if any, else every line that is only a
    verdict ("B", "(A)", "Response A", "Answer: B", "**A**."); all must agree. Anything else is None."""
    if not isinstance(text, str):
        return None
    markers = [m.upper() for m in _MARKER_AB.findall(text)]
    if markers:
        return _agreed(markers)
    lines = [m.group(1).upper() for m in (_PREF_LINE.match(_clean_line(x)) for x in text.splitlines()) if m]
    return _agreed(lines) if lines else None


def parse_score(text: str) -> float | None:
    """A number, strictly: `[[7]]` markers if any, else every line that is only a score ("7", "Score: 7.5",
    "Rating: 8/10", "6 out of 10"; the number as written, not rescaled); all must agree."""
    if not isinstance(text, str):
        return None
    markers = [float(m) for m in _MARKER_SCORE.findall(text)]
    if not markers:
        markers = [float(m.group(1)) for m in (_SCORE_LINE.match(_clean_line(x)) for x in text.splitlines()) if m]
    value = _agreed(markers) if markers else None
    return value if value is not None and math.isfinite(value) else None


def parse_verdict(text: str, parse: str):
    """yes_no -> True/False (envs.proposal.parse_yes_no), preference -> "A"/"B", score -> float;
    None when the text does not carry a clear verdict."""
    if parse == "yes_no":
        return parse_yes_no(text)
    if parse == "preference":
        return parse_preference(text)
    if parse == "score":
        return parse_score(text)
    raise ValueError(f"parse={parse!r}: use one of {', '.join(PARSE_MODES)}")


def template_fields(template: str) -> list[str]:
    """The top-level field names a str.format template reads (ValueError for a malformed template)."""
    names = []
    for _, name, _, _ in string.Formatter().parse(template):
        if name is not None:
            if name == "" or name.isdigit():
                raise ValueError(f"template {template!r}: use named fields like {{question}}, not {{}}")
            names.append(re.split(r"[.\[]", name, maxsplit=1)[0])
    return list(dict.fromkeys(names))


def fill_template(template: str, fields: dict) -> str:
    missing = [f for f in template_fields(template) if f not in fields]
    if missing:
        raise ValueError(f"template needs field(s) {missing}; the request has {sorted(fields)}")
    return template.format_map(fields)


def split_steps(response: str, separator: str) -> tuple[list[str], list[list[int]]]:
    """The response's non-blank pieces between separators and their [start, end) spans in the response
    (response[start:end] == step). A response without any non-blank piece is one step, itself."""
    if not separator:
        raise ValueError("step separator must not be empty")
    steps, spans, pos = [], [], 0
    for piece in response.split(separator):
        if piece.strip():
            steps.append(piece)
            spans.append([pos, pos + len(piece)])
        pos += len(piece) + len(separator)
    if not steps:
        return [response], [[0, len(response)]]
    return steps, spans


def step_scores_to_tokens(step_spans, step_scores, token_offsets) -> list[float]:
    """Per response token, the score of the step its first character falls in.

    step_spans: [start, end) character spans of the steps, in order; token_offsets: (start, end) per token,
    as a fast tokenizer's `return_offsets_mapping` gives them (response-relative). A token starting in the
    gap after a step (the separator that ends it) belongs to that step; a token before the first step to the
    first step; a zero-width token (a special token, e.g. eos) takes the step of the token before it.
    """
    if len(step_spans) != len(step_scores):
        raise ValueError(f"{len(step_spans)} step spans but {len(step_scores)} step scores")
    if not token_offsets:
        return []
    if not step_spans:
        raise ValueError("no steps to map onto tokens")
    starts = [int(s[0]) for s in step_spans]
    if starts != sorted(starts):
        raise ValueError(f"step spans are not in order: {step_spans}")
    out, step = [], 0
    for start, end in token_offsets:
        if end > start:
            step = max(bisect_right(starts, int(start)) - 1, 0)
        out.append(float(step_scores[step]))
    return out


# -- actors -----------------------------------------------------------------------

@dataclass
class GreedySampling:
    """The fields the rollout backends read from rollout.sampling, set for one greedy answer."""
    max_new_tokens: int = 8
    n: int = 1
    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int = 0
    min_p: float = 0.0
    cuts_fraction: float = 0.0
    stop: list[str] = field(default_factory=list)


def _device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() and ray.is_initialized() and ray.get_gpu_ids() else "cpu"


def _set_threads(threads: int) -> None:
    if threads:
        import torch

        torch.set_num_threads(threads)


def _check_chat_template(tokenizer, chat_template: bool, model_path: str) -> None:
    if chat_template and not getattr(tokenizer, "chat_template", None):
        from trainers.models import ModelError

        raise ModelError(f"chat_template=true, but the tokenizer of {model_path} has no chat template")


class LocalGenerativeJudge:
    """Greedy answers to a template filled from each request. With `plan_template`, two passes (DeltaRubric):
    a checklist from the plan template first, then the template with the request's fields and {checklist}."""

    def __init__(self, index: int, model_path: str, backend: str = "hf", dtype: str = "float32", threads: int = 0,
                 template: str = "{question}", chat_template: bool = False, max_new_tokens: int = 8,
                 max_model_len: int = 2048, plan_template: str = "", plan_max_new_tokens: int = 64):
        from actors.rollout_worker import make_backend

        _set_threads(threads)
        self.index, self.template, self.chat_template = index, template, chat_template
        self.plan_template = plan_template
        self.engine = make_backend(backend, model_path, dtype, _device(), max_model_len=max_model_len)
        self.tokenizer = self.engine.tokenizer
        _check_chat_template(self.tokenizer, chat_template, model_path)
        self.sampling = GreedySampling(max_new_tokens=max_new_tokens)
        self.plan_sampling = GreedySampling(max_new_tokens=plan_max_new_tokens)

    def ready(self) -> dict:
        return {"index": self.index, "pid": os.getpid(), "kind": "generative"}

    def judge(self, requests: list[dict]) -> list[dict]:
        from trainers.models import encode_prompt

        checklists = None
        if self.plan_template:
            plans = [encode_prompt(self.tokenizer, fill_template(self.plan_template, r), self.chat_template)
                     for r in requests]
            checklists = [g[0].text for g in self.engine.generate(plans, self.plan_sampling, 0)]
            requests = [{**r, "checklist": c} for r, c in zip(requests, checklists)]
        prompts = [encode_prompt(self.tokenizer, fill_template(self.template, r), self.chat_template)
                   for r in requests]
        groups = self.engine.generate(prompts, self.sampling, 0)
        if checklists is None:
            return [{"text": g[0].text} for g in groups]
        return [{"text": g[0].text, "checklist": c} for g, c in zip(groups, checklists)]


def reward_model_problem(architectures, num_labels: int) -> str | None:
    """Why a checkpoint (its config's `architectures` and number of labels) cannot be a scalar or process
    reward model here, or None."""
    archs = list(architectures or [])
    if archs and not any(a.endswith("ForSequenceClassification") for a in archs):
        return f"a {archs[0]} is not a sequence-classification (reward) model"
    if num_labels != 1:
        return f"num_labels={num_labels}; a reward model needs exactly 1"
    return None


class _SequenceClassifier:
    """A sequence-classification model with one label: one logit per text, read at its last token."""

    def __init__(self, index: int, model_path: str, dtype: str = "float32", threads: int = 0,
                 chat_template: bool = False, batch_size: int = 16):
        import torch
        from transformers import AutoModelForSequenceClassification

        from trainers.models import ModelError, load_tokenizer

        _set_threads(threads)
        torch_dtype = getattr(torch, dtype, None)
        if not isinstance(torch_dtype, torch.dtype):
            raise ModelError(f"dtype={dtype!r} is not a torch dtype")
        self.index, self.chat_template, self.batch_size = index, chat_template, batch_size
        self.tokenizer = load_tokenizer(model_path)
        _check_chat_template(self.tokenizer, chat_template, model_path)
        self.tokenizer.padding_side = "right"  # positions start at 0 in every row; the head reads the last real token
        self.tokenizer.truncation_side = "left"  # an over-long text keeps its end, where the response is
        model = AutoModelForSequenceClassification.from_pretrained(model_path, dtype=torch_dtype)
        problem = reward_model_problem(getattr(model.config, "architectures", None), model.config.num_labels)
        if problem:
            raise ModelError(f"{model_path}: {problem}")
        if model.config.pad_token_id is None:
            model.config.pad_token_id = self.tokenizer.pad_token_id
        self.model = model.to(_device()).eval()
        limits = [x for x in (getattr(model.config, "max_position_embeddings", None), self.tokenizer.model_max_length)
                  if isinstance(x, int) and 0 < x < 10 ** 7]  # a tokenizer without a limit says 10**30
        self.max_length = min(limits) if limits else None

    def ready(self) -> dict:
        return {"index": self.index, "pid": os.getpid(), "kind": self.kind}

    def _text(self, prompt: str, response: str) -> str:
        from trainers.scalar_head import reward_text

        return reward_text(self.tokenizer, prompt, response, self.chat_template)

    def logits(self, texts: list[str]) -> list[float]:
        import torch

        out = []
        with torch.no_grad():
            for i in range(0, len(texts), self.batch_size):
                enc = self.tokenizer(texts[i:i + self.batch_size], padding=True, return_tensors="pt",
                                     truncation=self.max_length is not None, max_length=self.max_length,
                                     add_special_tokens=not self.chat_template)
                enc = {k: v.to(self.model.device) for k, v in enc.items() if k in ("input_ids", "attention_mask")}
                out += self.model(**enc).logits[:, 0].float().cpu().tolist()
        bad = [v for v in out if not math.isfinite(v)]
        if bad:
            raise FloatingPointError(f"the reward model gave {len(bad)} non-finite score(s), e.g. {bad[0]}")
        return out


class LocalScalarRewardModel(_SequenceClassifier):
    kind = "scalar"

    def judge(self, requests: list[dict]) -> list[dict]:
        values = self.logits([self._text(r["prompt"], r["response"]) for r in requests])
        return [{"value": v} for v in values]


def _sigmoid(x: float) -> float:
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    z = math.exp(x)
    return z / (1.0 + z)


class LocalProcessRewardModel(_SequenceClassifier):
    kind = "process"

    def __init__(self, *args, step_separator: str = "\n", **kwargs):
        super().__init__(*args, **kwargs)
        self.step_separator = step_separator

    def judge(self, requests: list[dict]) -> list[dict]:
        split = [split_steps(r["response"], self.step_separator) for r in requests]
        texts = [self._text(r["prompt"], r["response"][:end]) for r, (_, spans) in zip(requests, split)
                 for _, end in spans]
        probs = iter(_sigmoid(v) for v in self.logits(texts))
        results = []
        for steps, spans in split:
            scores = [next(probs) for _ in steps]
            results.append({"steps": steps, "step_scores": scores, "spans": spans, "value": min(scores)})
        return results


GenerativeJudge = ray.remote(LocalGenerativeJudge)
ScalarRewardModel = ray.remote(LocalScalarRewardModel)
ProcessRewardModel = ray.remote(LocalProcessRewardModel)
ACTORS = {"generative": GenerativeJudge, "scalar": ScalarRewardModel, "process": ProcessRewardModel}

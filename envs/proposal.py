"""What the generator role reads and writes (SPEC section 1, generator step and gate L4).

``generator_prompt`` shows one or two library environments and asks for a new
one; ``extract_source`` takes the proposed source file out of the response.
``self_review_prompt`` and ``parse_yes_no`` are the semantic self-review (L4):
the policy reads an environment's code, one instance prompt and its reference
answer, and answers strictly "yes" or "no" to whether the prompt asks exactly
what the oracle computes.

The prompts are written for small models with short contexts: two short
environments and the instructions fit in about 1,500 tokens.
"""
from __future__ import annotations

import ast
import io
import re
import tokenize
from typing import Sequence

from envs.sandbox.limits import ALLOWED_IMPORTS

DEFAULT_EXAMPLE_CHARS = 2000
PYTHON_TAGS = ("python", "py", "python3")
_FENCE = re.compile(r"^[ \t]*```[ \t]*([\w+.-]*)[^\n]*$", re.MULTILINE)

PROTOCOL_TEXT = """\
An environment is one Python file defining one class with:
- name: a short snake_case string
- sample(self, rng, difficulty) -> dict: a new JSON-serialisable instance drawn only from rng (a \
random.Random); a larger difficulty (an int >= 1) makes it harder
- prompt(self, instance) -> str: the task for the solver, ending with the exact answer format
- reference(self, instance) -> str: a correct answer in that format
- score(self, instance, response) -> float in [0, 1]: 1.0 if the response is correct, else 0.0; \
empty, constant or random answers score 0.0
Only these imports are allowed: {imports}."""

ASK_TEXT = """\
Write a NEW environment: a different problem, not a renamed copy. Make it cheap for code but hard to \
work out by hand (like dynamic programming or graph search), or hard to solve but easy to verify (like a \
planted puzzle where any valid answer counts). Use difficulty to make instances larger or harder.
Answer with exactly one ```python code block containing the whole file, and nothing else."""


def compact_source(source: str, max_chars: int = DEFAULT_EXAMPLE_CHARS) -> str:
    """``source`` shortened to at most ``max_chars`` characters, in steps that keep it readable.

    1. the whole file when it fits;
    2. otherwise the module docstring is cut to its first paragraph, other
       docstrings and comment-only lines are dropped, blank-line runs collapsed;
    3. then the bodies of module-level helper functions become ``...``, one at a
       time in order of definition, so the environment class stays whole;
    4. if still too long, whole lines are kept up to the limit and a final
       ``# ... (truncated)`` line marks the cut.
    """
    if len(source) <= max_chars:
        return source
    text = re.sub(r"\n{3,}", "\n\n", _without_docstrings(source))
    while len(text) > max_chars:
        shorter = _elide_first_helper(text)
        if shorter is None:
            break
        text = shorter
    if len(text) <= max_chars:
        return text
    marker = "# ... (truncated)"
    kept, size = [], len(marker) + 1
    for line in text.splitlines():
        if size + len(line) + 1 > max_chars:
            break
        kept.append(line)
        size += len(line) + 1
    return "\n".join(kept + [marker])


def _elide_first_helper(text: str) -> str | None:
    """``text`` with the body of its first not yet elided module-level function replaced by ``...``."""
    try:
        tree = ast.parse(text)
    except SyntaxError:
        return None
    lines = text.splitlines()
    for node in tree.body:
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        body = node.body
        if len(body) == 1 and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                and body[0].value.value is Ellipsis:
            continue
        first, last = body[0].lineno - 1, node.end_lineno - 1
        if first == node.lineno - 1:  # a one-line function ("def f(x): return x") is short already
            continue
        indent = re.match(r"\s*", lines[first]).group(0)
        return "\n".join(lines[:first] + [indent + "..."] + lines[last + 1:]) + "\n"
    return None


def _without_docstrings(source: str) -> str:
    """``source`` with the module docstring cut to its first paragraph and other docstrings and
    comment-only lines dropped (unchanged when it does not parse)."""
    try:
        tree = ast.parse(source)
        comments = {tok.start[0] - 1 for tok in tokenize.generate_tokens(io.StringIO(source).readline)
                    if tok.type == tokenize.COMMENT and not tok.line[:tok.start[1]].strip()}
    except (SyntaxError, tokenize.TokenError, ValueError):
        return source
    lines = source.splitlines()
    drop: set[int] = set(comments)
    for node in ast.walk(tree):
        if not isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        body = node.body
        if not (body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)
                and isinstance(body[0].value.value, str)):
            continue
        first, last = body[0].lineno - 1, body[0].end_lineno - 1
        if isinstance(node, ast.Module):
            blank = next((i for i in range(first + 1, last) if not lines[i].strip()), None)
            quote = re.search(r"\"\"\"|'''", lines[first])
            if blank is not None and quote is not None and lines[first].lstrip()[:1] in "\"'rRuU":
                lines[blank] = quote.group(0)  # the first paragraph, closed where the second began
                drop.update(range(blank + 1, last + 1))
        elif len(body) > 1:  # a docstring that is the only statement must stay: the body would be empty
            drop.update(range(first, last + 1))
    return "\n".join(line for i, line in enumerate(lines) if i not in drop) + "\n"


def generator_prompt(examples: Sequence[tuple[str, str]], max_chars: int = DEFAULT_EXAMPLE_CHARS,
                     allowed_imports: Sequence[str] = ALLOWED_IMPORTS, topic: str | None = None) -> str:
    """The generator's prompt: the protocol, the ``(name, source)`` examples, and the request for a new one.

    Each example's source is shortened to ``max_chars`` characters (see
    ``compact_source``). ``topic``: what the new environment should be about (one line before the request).
    """
    imports = ", ".join(m for m in allowed_imports if m != "__future__")
    parts = ["You write environments for training a problem solver.", PROTOCOL_TEXT.format(imports=imports)]
    if examples:
        parts.append("Existing environments:" if len(examples) > 1 else "An existing environment:")
        for name, source in examples:
            parts.append(f"# {name}\n```python\n{compact_source(source, max_chars).rstrip()}\n```")
    if topic:
        parts.append(f"The new environment's task: {topic.strip().rstrip('.')}.")
    parts.append(ASK_TEXT)
    return "\n\n".join(parts) + "\n"


def _blocks(response: str) -> list[tuple[str, str, bool]]:
    """Fenced blocks as (language tag, code, terminated); an unterminated last fence runs to the end."""
    out, pos = [], 0
    while True:
        start = _FENCE.search(response, pos)
        if start is None:
            return out
        end = _FENCE.search(response, start.end())
        body_start = start.end() + 1
        if end is None:
            out.append((start.group(1).lower(), response[body_start:], False))
            return out
        out.append((start.group(1).lower(), response[body_start:end.start()], True))
        pos = end.end()


def _parse(code: str) -> ast.Module | None:
    try:
        return ast.parse(code)
    except (SyntaxError, ValueError):
        return None


def _defines_class(code: str, tree: ast.Module | None) -> bool:
    if tree is not None:
        return any(isinstance(n, ast.ClassDef) for n in tree.body)
    return re.search(r"^class\s+\w+", code, re.MULTILINE) is not None


def extract_source(response: str) -> str | None:
    """The one Python source file in a generator response, or None when it holds no code.

    Candidates are fenced blocks tagged python/py/python3 and untagged fenced
    blocks that parse as Python or start a class; a fence left open at the end
    of the response (the model ran out of tokens) runs to the end. Without any
    fence, a response that is itself Python defining a class counts. When several candidates remain,
    the largest one defining a class wins (else the largest). A python-tagged
    block is returned even if it does not parse, so the L1 gate reports the
    syntax error.
    """
    if not isinstance(response, str):
        return None
    candidates = []
    for tag, code, _terminated in _blocks(response):
        if not code.strip():
            continue
        tree = _parse(code)
        defines_class = _defines_class(code, tree)
        if tag in PYTHON_TAGS or (tag == "" and (tree is not None or defines_class)):
            candidates.append((defines_class, len(code.strip()), code))
    if not candidates and "```" not in response:
        tree = _parse(response)
        if tree is not None and _defines_class(response, tree):
            candidates.append((True, len(response), response))
    if not candidates:
        return None
    code = max(candidates, key=lambda c: (c[0], c[1]))[2]
    return code.strip("\n") + "\n"


REVIEW_TEXT = """\
Below is the code of a problem generator, one problem it produced, and the answer its checker accepts.

```python
{source}
```

Problem:
{prompt}

Accepted answer:
{reference}

Question: does the problem text ask for exactly what the checker accepts, with enough information to \
solve it and the same answer format? Reply with one word: yes or no."""


def self_review_prompt(source: str, instance_prompt: str, reference: str,
                       max_chars: int = DEFAULT_EXAMPLE_CHARS) -> str:
    """The L4 self-review question about one instance: the source (shortened to ``max_chars``), the
    instance prompt and its reference answer, asking for a strict one-word yes/no."""
    return REVIEW_TEXT.format(source=compact_source(source, max_chars).rstrip(), prompt=instance_prompt.strip(),
                              reference=str(reference).strip()) + "\n"


_VERDICT = re.compile(r"^(?:(?:final\s+)?answer\s*[:\-]\s*)?(yes|no)$")
_HEDGES = re.compile(r"\b(but|however|although|though|except|unless|partly|partially|mostly|maybe|perhaps|"
                     r"probably|not sure|unsure|sort of|kind of|depends)\b")
_TURNS = ("but", "however", "actually", "although", "though", "wait")


def _clean(line: str) -> str:
    return re.sub(r"[*_`\"']", "", line).strip().rstrip(".!").strip().lower()


def parse_yes_no(text: str) -> bool | None:
    """Strict reading of a yes/no verdict: True, False, or None (unreadable; the gate fails).

    Accepted:
      * the last non-empty line is exactly "yes" or "no" (optionally "Answer: yes",
        markdown emphasis, quotes or a final period), so reasoning may come first;
      * otherwise the first word is "yes" or "no", the first sentence carries no
        hedge and no later sentence turns it around: "Yes." and "Yes, the prompt
        matches the oracle." count, while "Yes, but the bound is wrong", "yes and
        no", "Yes, probably" and "Yes. Actually, no." give None.
    A response whose first word and last line disagree gives None.
    """
    if not isinstance(text, str):
        return None
    lines = [line for line in text.strip().splitlines() if line.strip()]
    if not lines:
        return None
    sentences = [s.strip().lower() for s in re.split(r"(?<=[.!?;])\s+|\n", text.strip()) if s.strip()]
    first_word = re.match(r"[\W_]*(yes|no)\b", sentences[0])
    last = _VERDICT.match(_clean(lines[-1]))
    if last is not None:
        if first_word is not None and first_word.group(1) != last.group(1):
            return None
        return last.group(1) == "yes"
    if first_word is None:
        return None
    word = first_word.group(1)
    other = "no" if word == "yes" else "yes"
    if _HEDGES.search(sentences[0]) or re.search(rf"\b{other}\b", sentences[0]):
        return None
    for sentence in sentences[1:]:
        lead = re.match(r"[\W_]*([a-z]+)", sentence)
        if lead is not None and lead.group(1) in (other, *_TURNS):
            return None
    return word == "yes"


__all__ = ["ALLOWED_IMPORTS", "DEFAULT_EXAMPLE_CHARS", "compact_source", "extract_source", "generator_prompt",
           "parse_yes_no", "self_review_prompt"]

"""The R-Zero challenger's pieces without Ray: its prompt, the question it wrote, majority pseudo-labels, the
repetition clusters of a batch, and checkers that know the answer of some questions.

    uncertainty   p = share of the solver's m answers that agree with the majority; reward min(p, 1 - p)
    repetition    questions closer than `threshold` (difflib ratio on case- and space-folded text) share a
                  cluster (single linkage); each question's penalty is weight * |its cluster| / batch size
    checkers      `arithmetic`: the question's arithmetic expression (digits, + - * / and parentheses),
                  evaluated exactly; where a checker answers, pseudo-label accuracy is measured
"""
from __future__ import annotations

import ast
import difflib
import operator
import re
from collections import Counter
from fractions import Fraction

from envs.critique import answer_key

ASK = ("Write one new question of the same kind as these examples, with a single short answer. Write only the "
       "question.")


def challenger_prompt(examples: list[str], family: str = "") -> str:
    shown = "\n".join(f"Example: {e.strip()}" for e in examples)
    kind = f"Task family: {family.strip()}\n" if family.strip() else ""
    return f"{kind}{shown}\n\n{ASK}"


def question_text(response: str, max_chars: int = 400) -> str:
    """The question the challenger wrote: its first non-empty paragraph, without a leading 'Question:'."""
    for block in re.split(r"\n\s*\n", response.strip()):
        text = re.sub(r"^\s*(?:new\s+)?question\s*[:\-]\s*", "", block.strip(), flags=re.IGNORECASE).strip()
        if text:
            return text[:max_chars]
    return ""


def pseudo_label(answers: list[str]) -> tuple[str | None, float]:
    """(majority answer, p = its share of all answers); answers with no extractable text count against p.
    (None, 0.0) when no answer has text."""
    keys = [answer_key(a) for a in answers]
    counts = Counter(k for k in keys if k)
    if not counts:
        return None, 0.0
    label, top = counts.most_common(1)[0]
    return label, top / len(keys)


def uncertainty_reward(p: float) -> float:
    return min(p, 1.0 - p)


def _fold(text: str) -> str:
    return " ".join(text.lower().split())


def repetition_clusters(questions: list[str], threshold: float) -> list[int]:
    """A cluster id per question: single-linkage over pairs whose similarity is at least `threshold`."""
    parent = list(range(len(questions)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    folded = [_fold(q) for q in questions]
    for i in range(len(folded)):
        for j in range(i + 1, len(folded)):
            if difflib.SequenceMatcher(None, folded[i], folded[j]).ratio() >= threshold:
                parent[root(j)] = root(i)
    return [root(i) for i in range(len(questions))]


def repetition_penalties(questions: list[str], threshold: float, weight: float) -> list[float]:
    clusters = repetition_clusters(questions, threshold)
    sizes = Counter(clusters)
    return [weight * sizes[c] / len(questions) if sizes[c] > 1 else 0.0 for c in clusters]


# -- checkers: the true answer of a question, where one can be computed ------------------------------------------
_EXPR = re.compile(r"[-+]?\(?\s*\d+(?:\s*[-+*/]\s*\(?\s*[-+]?\d+\s*\)?)+")
_OPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv}


def _eval(node):
    if isinstance(node, ast.Expression):
        return _eval(node.body)
    if isinstance(node, ast.Constant) and isinstance(node.value, int) and not isinstance(node.value, bool):
        return Fraction(node.value)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        v = _eval(node.operand)
        return -v if isinstance(node.op, ast.USub) else v
    if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
        left, right = _eval(node.left), _eval(node.right)
        if isinstance(node.op, ast.Div) and right == 0:
            raise ZeroDivisionError
        return _OPS[type(node.op)](left, right)
    raise ValueError("not plain arithmetic")


def arithmetic_answer(question: str) -> str | None:
    """The value of the longest arithmetic expression in the question (an integer, or a fraction a/b), else None."""
    found = sorted((m.group().strip() for m in _EXPR.finditer(question)), key=len, reverse=True)
    for expr in found:
        try:
            value = _eval(ast.parse(expr, mode="eval"))
        except (SyntaxError, ValueError, ZeroDivisionError, RecursionError):
            continue
        return str(value.numerator) if value.denominator == 1 else f"{value.numerator}/{value.denominator}"
    return None


CHECKERS = {"none": lambda q: None, "arithmetic": arithmetic_answer}

"""DeltaRubric's prompts: one model as Disagreement Planner (a checklist of checks that separate two responses)
and as Checklist Verifier (runs the checks, then states a preference); the direct judge (no checklist) is the
baseline. The verdict line is "Preference: A" or "Preference: B" (parsed strictly by the judge parser).
"""
from __future__ import annotations

VERDICT = "End with one line: 'Preference: A' or 'Preference: B'."


def _cut(text: str, max_chars: int) -> str:
    text = text.strip()
    return text if len(text) <= max_chars else text[:max_chars].rstrip() + " ..."


def _pair(question: str, a: str, b: str, max_chars: int) -> str:
    return (f"Question:\n{question.strip()}\n\nResponse A:\n{_cut(a, max_chars) or '(empty)'}\n\n"
            f"Response B:\n{_cut(b, max_chars) or '(empty)'}")


def planner_prompt(question: str, a: str, b: str, max_checks: int = 3, max_chars: int = 400) -> str:
    return (f"{_pair(question, a, b, max_chars)}\n\nThe two responses disagree. Write a checklist of at most "
            f"{max_checks} short checks, specific to this question, that would show which response is correct. "
            "Do not say which one is.")


def verifier_prompt(question: str, a: str, b: str, checklist: str, max_chars: int = 400) -> str:
    return (f"{_pair(question, a, b, max_chars)}\n\nChecklist:\n{_cut(checklist, 2 * max_chars)}\n\n"
            f"Run each check on response A and on response B. {VERDICT}")


def direct_prompt(question: str, a: str, b: str, max_chars: int = 400) -> str:
    return f"{_pair(question, a, b, max_chars)}\n\nWhich response is correct? {VERDICT}"

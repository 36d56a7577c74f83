"""DeltaRubric's prompts: one model as Disagreement Planner (a checklist of checks that separate two responses)
and as Checklist Verifier (runs the checks, then states a preference); the direct judge (no checklist) is the
baseline. The verdict line is "Preference: A" or "Preference: B" (parsed strictly by the judge parser); with a
verdict prefix written for the model ("\nPreference:") the verdict is what follows it (`parse_letter`).
"""
from __future__ import annotations

import re

VERDICT = "End with one line: 'Preference: A' or 'Preference: B'."


def _cut(text: str, max_chars: int) -> str:
    text = text.strip()
    return text if len(text) <= max_chars else text[:max_chars].rstrip() + " ..."


PAIR = "Question:\n{question}\n\nResponse A:\n{a}\n\nResponse B:\n{b}"
# str.format templates over a request's fields (question, a, b; the verifier's also checklist): the judge pool's
# `rubric` judges use them as they are; the episode fills them with cut texts
PLAN_TEMPLATE = (PAIR + "\n\nThe two responses disagree. Write a checklist of at most {max_checks} short checks, "
                 "specific to this question, that would show which response is correct. Do not say which one is.")
VERIFY_TEMPLATE = (PAIR + "\n\nChecklist:\n{checklist}\n\nRun each check on response A and on response B. "
                   + VERDICT)
DIRECT_TEMPLATE = PAIR + "\n\nWhich response is correct? " + VERDICT


def plan_template(max_checks: int = 3) -> str:
    return PLAN_TEMPLATE.replace("{max_checks}", str(int(max_checks)))


def _fields(question: str, a: str, b: str, max_chars: int) -> dict:
    return {"question": question.strip(), "a": _cut(a, max_chars) or "(empty)", "b": _cut(b, max_chars) or "(empty)"}


def planner_prompt(question: str, a: str, b: str, max_checks: int = 3, max_chars: int = 400) -> str:
    return plan_template(max_checks).format(**_fields(question, a, b, max_chars))


def verifier_prompt(question: str, a: str, b: str, checklist: str, max_chars: int = 400) -> str:
    return VERIFY_TEMPLATE.format(**_fields(question, a, b, max_chars), checklist=_cut(checklist, 2 * max_chars))


def direct_prompt(question: str, a: str, b: str, max_chars: int = 400) -> str:
    return DIRECT_TEMPLATE.format(**_fields(question, a, b, max_chars))


_LETTER = re.compile(r"^\s*[\[(*\"']*\s*(?:response\s+)?([AB])(?![A-Za-z])", re.IGNORECASE)


def parse_letter(text: str) -> str | None:
    """The verdict after a written "Preference:": A or B first ("A", " (b)", "Response A."), else None."""
    m = _LETTER.match(text or "")
    return m.group(1).upper() if m else None

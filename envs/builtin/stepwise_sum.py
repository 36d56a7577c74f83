"""stepwise_sum: add one-digit numbers one at a time, one line per partial sum; the outcome is verified.

Instance: {"terms": [t1, ..., tk]} with k = difficulty + 2 terms (difficulty below 1 counts as 1), each 1-9.
Prompt: "Add 3 + 5 + 2 one number at a time ..." asking for one line per partial sum and the total on a
line "Answer: <total>". Reference (the worked steps):

    3 + 5 = 8
    8 + 2 = 10
    Answer: 10

Score: 1.0 when the first line that starts with "Answer:" (any case) holds the total, else 0.0. Only the
outcome is scored: the steps are free text, so a response is a sequence of steps whose first mistake the
process reward (Monte-Carlo continuations, a trained PRM) has to find; text after the answer line is ignored.

Self-contained on purpose (stdlib only, no project imports): environment files are loaded from their source
text inside a worker process.
"""
import random
import re


class StepwiseSum:
    name = "stepwise_sum"
    description = "Add one-digit numbers one partial sum per line; the final answer is verified."
    answer_format = "final_line"

    def sample(self, rng: random.Random, difficulty: int) -> dict:
        return {"terms": [rng.randint(1, 9) for _ in range(max(1, int(difficulty)) + 2)]}

    def prompt(self, instance: dict) -> str:
        terms = " + ".join(str(t) for t in instance["terms"])
        return (f"Add {terms} one number at a time: write one line per partial sum, "
                f"then the total on a last line as \"Answer: <total>\".")

    def reference(self, instance: dict) -> str:
        terms = instance["terms"]
        lines, total = [], terms[0]
        for t in terms[1:]:
            lines.append(f"{total} + {t} = {total + t}")
            total += t
        return "\n".join(lines + [f"Answer: {total}"])

    def score(self, instance: dict, response: str) -> float:
        if not isinstance(response, str):
            return 0.0
        for line in response.splitlines():
            m = re.match(r"\s*answer\s*:\s*(.*)$", line, flags=re.IGNORECASE)
            if m:
                found = re.match(r"-?\d+", m.group(1).strip())
                return 1.0 if found and int(found.group(0)) == sum(instance["terms"]) else 0.0
        return 0.0

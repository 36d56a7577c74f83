"""The console of a run: one line per finished step, with a live bar under it (rich: elapsed and ETA).

    step  3/15  solver     reward 0.125  loss +0.0123  library 10/10 active  12.3 s

The step, the episode, its reward and loss are everyone's; each family's report section adds its own part
(`step_parts`: self-play's library and funnel, the critic's accuracy, ...)."""
from __future__ import annotations

from cluster.episodes.registry import report_sections


class Progress:
    def __init__(self, total: int, start: int, enabled: bool):
        self.total, self.bar = total, None
        self.sections = list(report_sections().values())
        if enabled:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress as RichProgress, TextColumn, TimeRemainingColumn

            self.bar = RichProgress(TextColumn("[bold]step"), MofNCompleteColumn(), BarColumn(),
                                    TimeRemainingColumn())
            self.task = self.bar.add_task("train", total=total, completed=start)
            self.bar.start()

    def update(self, row: dict) -> None:
        line = step_line(row, self.total, self.sections)
        if self.bar is not None:
            self.bar.console.print(line, highlight=False, markup=False, soft_wrap=True)  # never folded
            self.bar.update(self.task, completed=row["step"] + 1)
        else:
            print(line, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()


def step_line(row: dict, total: int, sections=None) -> str:
    width = len(str(total))
    parts = [f"step {row['step'] + 1:>{width}}/{total}", f"{row.get('episode') or row.get('kind', ''):<9}",
             f"reward {first_role(row, 'reward/mean'):.3f}", f"loss {first_role(row, 'loss'):+.4f}"]
    if "update/skipped" in row and row["update/skipped"]:
        parts[-1] = "no update (no reward spread)"
    for section in report_sections().values() if sections is None else sections:
        section.step_parts(row, parts)
    parts.append(f"{row['timing/step']:.1f} s")
    return "  ".join(parts)


def first_role(row: dict, key: str) -> float:
    """row[key], or in a row of several roles the first role's <role>/key (0 when absent)."""
    if key in row:
        return row[key]
    return next((v for k, v in row.items() if k.endswith("/" + key) and isinstance(v, (int, float))), 0.0)

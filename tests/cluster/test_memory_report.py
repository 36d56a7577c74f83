"""The memory-agent summary, plots and report section from hand-written run files."""
import json

import pytest

from cluster.episodes.memory import report as memory_report
from cluster.reports.html import write_report


def _row(method, task, kind, length, hit, stop=None):
    r = {"method": method, "task": task, "kind": kind, "length": length, "answer": "x", "gold": "y",
         "hit": hit, "exact": 0.0, "f1": 0.5 * hit}
    return {**r, "stop": stop} if stop else r


@pytest.fixture
def run(tmp_path):
    rows = [{"step": 0, "kind": "memory_expert", "episode": "agent", "agent/accuracy": 1.0, "stop/finish": 1.0},
            {"step": 1, "kind": "memory_agent", "episode": "agent", "agent/accuracy": 0.25, "stop/finish": 0.5,
             "stop/malformed": 0.5},
            {"step": 2, "kind": "memory_agent", "episode": "agent", "agent/accuracy": 0.75, "stop/finish": 1.0,
             "stop/malformed": 0.0}]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    tasks = [("needle-2000-1", "needle", 2000), ("count-2000-2", "count", 2000), ("needle-8000-3", "needle", 8000),
             ("count-8000-4", "count", 8000)]
    before = [_row("tools", t, k, n, 0.0, "malformed") for t, k, n in tasks] + \
             [_row("truncated", t, k, n, float(i == 0)) for i, (t, k, n) in enumerate(tasks)]
    after = [_row("tools", t, k, n, float(i < 3), "finish") for i, (t, k, n) in enumerate(tasks)]
    for tag, rs in (("before", before), ("after", after)):
        (tmp_path / f"memory_eval_{tag}.json").write_text(json.dumps({"tag": tag, "rows": rs}))
    return tmp_path


def test_summary_by_method_length_and_kind_with_the_paired_change(run):
    s = memory_report.summarize(run)
    assert s["steps"] == 3 and s["kinds"]["memory_agent"]["accuracy_first"] == pytest.approx(0.5)
    table = {(e["method"], e["tag"]): e for e in s["heldout"]}
    assert set(table) == {("tools", "before"), ("truncated", "before"), ("tools", "after")}
    after = table[("tools", "after")]
    assert after["all"]["accuracy"] == 0.75 and after["all"]["n"] == 4
    assert {n: c["accuracy"] for n, c in after["by_length"].items()} == {"2000": 1.0, "8000": 0.5}
    assert after["by_length"]["8000"]["n"] == 2 and after["by_length"]["8000"]["f1"] == 0.25
    assert after["by_kind"]["needle"]["accuracy"] == 1.0 and after["by_kind"]["count"]["accuracy"] == 0.5
    assert table[("tools", "before")]["stops"] == {"malformed": 1.0} and after["stops"] == {"finish": 1.0}
    assert s["change"]["delta"] == pytest.approx(0.75)  # the same four tasks: 0, 0, 0, 0 -> 1, 1, 1, 0
    text = memory_report.format_summary(s)
    assert "tools (StateLM), after" in text and "truncated reading, before" in text
    assert "tools (StateLM), before: malformed 1.00; tools (StateLM), after: finish 1.00" in text
    assert "tools after - before (paired): +0.750" in text


def test_plots_and_the_report_section(run):
    written = memory_report.write_plots(run, run / "plots")
    assert [p.name for p in written] == ["memory_heldout.png", "memory_training.png"]
    page = write_report(run).read_text()
    assert 'id="memory"' in page and "Held-out accuracy on 4 tasks" in page and "2000 words" in page
    assert memory_report.summarize(run.parent / "nothing") is None

"""`evoforge report RUN`: the page of a run, rendered in a real headless browser (chromium-headless-shell)."""
import json
import math
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
import yaml
from matplotlib.image import imread

from cluster.reports import html as report_html
from cluster.evaluation.scoring import score_row
from cluster.episodes.selfplay.rejections import count_rejections, new_rejections, write_rejections
from cluster.reports.summary import summarize
from cluster.reports.html import write_report
from cluster.evaluation.stats import paired_delta
from envs.gates import PROPOSAL_GATES
from envs.library import Library, LibraryEntry
from tests.cluster.test_report import _selfplay_rows
from tests.conftest import evoforge

BROWSER = shutil.which("chromium-headless-shell") or "/usr/bin/chromium-headless-shell"
WIDTH, HEIGHT = 1200, 3000
EVIL = "</pre><script>alert(1)</script><img src=x onerror=alert(2)>"

# the held-out eval files: rows as `evoforge eval` writes them (cluster.evaluation.scoring.score_row), on the same 64
# instances before and after. Greedy: 8/64 right before, 24/64 after (a superset: no instance lost), so the
# accuracy goes 0.125 -> 0.375, a paired change of +0.250 whose interval excludes 0. pass@2 from 4 samples per
# instance: before, 16 instances with 1/4 passing (pass@2 = 1 - C(3,2)/C(4,2) = 0.5): 16 * 0.5 / 64 = 0.125;
# after, those 16 with 3/4 passing (pass@2 = 1) and 32 more with 1/4: (16 * 1 + 32 * 0.5) / 64 = 0.5.
N, K, SAMPLES = 64, 2, 4
RIGHT_BEFORE, RIGHT_AFTER = 8, 24


def _greedy(right: int) -> list[float]:
    return [1.0] * right + [0.0] * (N - right)


def _sampled(groups: list[tuple[int, int]]) -> list[list[float]]:
    """(instances, passing samples of SAMPLES) runs, padded with instances where no sample passes."""
    out = [[1.0] * c + [0.0] * (SAMPLES - c) for n, c in groups for _ in range(n)]
    return out + [[0.0] * SAMPLES] * (N - len(out))


def _eval_rows() -> tuple[list[dict], list[dict]]:
    def row(task, scores, sampled=None):
        verdicts = ["correct" if s >= 1.0 else "wrong" for s in scores]
        return score_row(task, scores, verdicts, [40] * len(scores), 3, 1234, sampled, K if sampled else 0)

    before = [row("rg_leg_counting", _greedy(RIGHT_BEFORE), _sampled([(16, 1)]))]
    after = [row("rg_leg_counting", _greedy(RIGHT_AFTER), _sampled([(16, 3), (32, 1)])),
             # only after (no "before"): the change and its interval show "-"; partial scores: exact < accuracy
             row("repeat_digits", [1.0] * (N // 2) + [0.5] * (N // 2))]
    return before, after


def _ci(pair) -> str:
    """An interval as the page writes it (formatted here, not with the page's own helper)."""
    low, high = pair
    return f"[{low:.3f}, {high:.3f}]"


# -- building a run the way the product writes it --------------------------------------------------------
def _selfplay_run(root: Path) -> Path:
    run = root / "selfplay-2026-12-02_10-00-00"
    run.mkdir(parents=True)
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in _selfplay_rows()))
    (run / "config.yaml").write_text(yaml.safe_dump({"model": {"name": "tiny"}, "env": {"name": "repeat_digits"},
                                                     "steps": 12, "selfplay": {"enabled": True}}))
    before, after = _eval_rows()
    (run / "eval_before.json").write_text(json.dumps(before))
    (run / "eval_after.json").write_text(json.dumps(after))

    lib = Library(run / "library")
    lib.add(LibraryEntry(name="repeat_digits_seed", source="def sample(rng, d):\n    return {'n': d}\n", kind="seed"))
    passed = [{"gate": g, "passed": True, "reason": f"{g} ok", "details": {"checked": 8}} for g in PROPOSAL_GATES]
    lib.add(LibraryEntry(name="count_vowels", source="def sample(rng, d):\n    return {'word': 'a' * d}\n",
                         lineage=["repeat_digits_seed"], gates=passed, admitted_step=2,
                         calibration={"difficulty": 2, "p": 0.45, "tried": {"1": 0.9, "2": 0.45},
                                      "in_band": True, "cached": False, "when": "start"}))
    lib.add(LibraryEntry(name="evil_env", source=f"# {EVIL}\nx = '<b>bold</b> & \"quotes\"'\n",
                         lineage=["repeat_digits_seed", "count_vowels"], gates=passed, admitted_step=4,
                         calibration={"difficulty": 1, "p": 0.3, "in_band": True, "cached": True, "when": "start"}))
    lib.record_usage("count_vowels", 3, 0.5, 16)
    lib.record_usage("count_vowels", 5, 0.25, 16)
    lib.record_usage("evil_env", 5, 0.9, 8)
    lib.retire("evil_env", 11)

    counts = new_rejections()
    records = [{"gates": [{"gate": "parse", "passed": True, "reason": ""},
                          {"gate": "L1", "passed": False, "reason": "forbidden import 'os' at line 3"}]},
               {"gates": [{"gate": "parse", "passed": True, "reason": ""},
                          {"gate": "L1", "passed": False, "reason": "forbidden import 'sys' at line 7"}]},
               {"gates": [{"gate": "parse", "passed": False, "reason": "no code block"}]}]
    write_rejections(run / "proposals", count_rejections(counts, records, step=10))
    return run


@pytest.fixture
def summaries(monkeypatch):
    """summarize() as the page gets it, recorded (unchanged)."""
    seen = []

    def recorded(run_dir):
        seen.append(summarize(run_dir))
        return seen[-1]

    monkeypatch.setattr(report_html, "summarize", recorded)
    return seen


# -- the browser ------------------------------------------------------------------------------------------
def _browser(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    if not Path(BROWSER).is_file():
        pytest.fail("chromium-headless-shell is missing (the report tests render the page in it): install it with "
                    "`sudo apt-get install chromium-headless-shell` or `sudo scripts/system-deps.sh test` "
                    "(`make test` does this)")
    profile = tmp_path / "browser-profile"
    proc = subprocess.run([BROWSER, "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                           "--force-device-scale-factor=1", f"--user-data-dir={profile}",
                           *args], check=False, capture_output=True, text=True, timeout=120,
                          env={"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc


class _Dom(HTMLParser):
    """The rendered DOM: its tags, its text, each table row's cell texts, script bodies."""

    def __init__(self, markup: str):
        super().__init__()
        self.tags: list[str] = []
        self.text: list[str] = []
        self.rows: list[list[str]] = []
        self.scripts: list[str] = []
        self._cell: list[str] | None = None
        self._in_script = False
        self.feed(markup)

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        if tag == "tr":
            self.rows.append([])
        elif tag in ("td", "th"):
            self._cell = []
        self._in_script = tag == "script"

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self.rows[-1].append("".join(self._cell).strip())
            self._cell = None
        if tag == "script":
            self._in_script = False

    def handle_data(self, data):
        if self._in_script:
            self.scripts.append(data)
        self.text.append(data)
        if self._cell is not None:
            self._cell.append(data)


def _dom(tmp_path: Path, page: Path) -> _Dom:
    return _Dom(_browser(tmp_path, "--dump-dom", page.as_uri()).stdout)


def _screenshot(tmp_path: Path, page: Path) -> np.ndarray:
    shot = tmp_path / "shot.png"
    _browser(tmp_path, f"--screenshot={shot}", f"--window-size={WIDTH},{HEIGHT}", page.as_uri())
    return _rgb(imread(shot))


# -- the tests --------------------------------------------------------------------------------------------
def test_selfplay_report_renders_in_a_browser(tmp_path, summaries):
    run = _selfplay_run(tmp_path)
    page = write_report(run)
    assert page == run / "report.html" and sorted(p.name for p in (run / "plots").iterdir()) == \
        ["funnel.png", "heldout.png", "library.png", "rewards.png"]
    markup = page.read_text()
    assert "http://" not in markup and "https://" not in markup and "<script" not in markup  # offline, no JS
    assert markup.count('src="data:image/png;base64,') == 4

    dom = _dom(tmp_path, page)
    text = " ".join(dom.text)
    s = summaries[-1]
    # the header, the key figures
    assert "selfplay-2026-12-02_10-00-00" in text and "model: tiny" in text and "env: repeat_digits" in text
    assert f"{s['solver_reward']['before']:.3f} → {s['solver_reward']['after']:.3f}" in text
    assert "11 → 15" in text and "6 admitted, 1 retired" in text
    # the held-out figures, from the real eval rows: hand-checked first, then every interval as computed
    before, after = _eval_rows()
    (b,), (a, digits) = before, after
    assert (b["accuracy"], a["accuracy"], b["exact"], a["exact"]) == (0.125, 0.375, 0.125, 0.375)
    assert (b["pass_at_k"], a["pass_at_k"], a["k"]) == (0.125, 0.5, 2)
    assert (digits["accuracy"], digits["exact"], digits["instances"]) == (0.75, 0.5, 64)
    acc = paired_delta(b["scores"], a["scores"])
    half = 1.959963984540054 * math.sqrt(12 / 63 / 64)  # 16 diffs of 1, 48 of 0: variance (16 * .75² + 48 * .25²) / 63
    assert acc["delta"] == 0.25 and acc["delta_ci"] == pytest.approx([0.25 - half, 0.25 + half])
    assert acc["significant"] and _ci(acc["delta_ci"]) == "[0.143, 0.357]"  # larger than its interval
    pk = paired_delta(b["pass_scores"], a["pass_scores"])
    assert pk["delta"] == 0.375 and pk["significant"]
    held = {r["task"]: r for r in s["held_out"]}  # summarize's own, not patched
    assert held["rg_leg_counting"]["delta_ci"] == acc["delta_ci"] and held["rg_leg_counting"]["significant"]
    assert held["rg_leg_counting"]["pass_delta_ci"] == pk["delta_ci"]
    assert held["repeat_digits"]["before"] is None and held["repeat_digits"].get("delta") is None

    assert f"change +0.250 {_ci(acc['delta_ci'])}: larger than its interval" in text and "change -" in text
    assert "0.125 → 0.375" in text and "- → 0.750" in text
    # the held-out tables: accuracy with intervals, and pass@k
    assert ["rg_leg_counting", "64", "0.125", _ci(b["accuracy_ci"]), "0.375", _ci(a["accuracy_ci"]),
            "+0.250", "[0.143, 0.357]", "yes", "0.125", "0.375"] in dom.rows
    assert ["repeat_digits", "64", "-", "-", "0.750", _ci(digits["accuracy_ci"]), "-", "-", "-", "-",
            "0.500"] in dom.rows
    assert ["rg_leg_counting", "2", "0.125", _ci(b["pass_at_k_ci"]), "0.500", _ci(a["pass_at_k_ci"]),
            "+0.375", _ci(pk["delta_ci"]), "yes"] in dom.rows
    assert ["repeat_digits", "-", "-", "-", "-", "-", "-", "-", "-"] in dom.rows
    # the funnel (counts and % of proposals) and the rejection reasons
    assert ["proposals", "24", "100.0%"] in dom.rows and ["L4", "6", "25.0%"] in dom.rows
    assert ["admitted", "6", "25.0%"] in dom.rows
    assert ["L1", "2", "forbidden import '...' at line N"] in dom.rows and ["parse", "1", "no code block"] in dom.rows
    assert ["count_vowels", "2", "0.450", "yes", "no"] in dom.rows  # calibration: measured at the start
    assert ["evil_env", "1", "0.300", "yes", "yes"] in dom.rows  # read from the cache
    # the library: every environment, its lineage, calibration, usage (rollout-weighted mean pass rate)
    assert ["repeat_digits_seed", "seed", "active", "-", "-", "-", "0", "0", "0", "-"] in dom.rows
    assert ["count_vowels", "generated", "active", "repeat_digits_seed", "2", "0.450", "2", "2", "32",
            "0.375"] in dom.rows
    assert ["evil_env", "generated", "retired (step 11)", "repeat_digits_seed, count_vowels", "1", "0.300", "4",
            "1", "8", "0.900"] in dom.rows
    assert dom.tags.count("details") == 3 and ["L5", "PASS", "L5 ok", '{"checked": 8}'] in dom.rows
    # the model-written source is shown as text, never as markup
    assert "script" not in dom.tags and not dom.scripts
    assert EVIL in text and "<b>bold</b> & \"quotes\"" in text
    assert dom.tags.count("img") == 4  # the plots only; the source's <img> stayed text

    pixels = _screenshot(tmp_path, page)
    assert pixels.shape == (HEIGHT, WIDTH, 3)
    assert (pixels.min(axis=2) < 245).mean() > 0.02, "the page looks blank"
    for name in ("rewards.png", "heldout.png", "library.png", "funnel.png"):  # each plot drawn, pixel for pixel, in the page
        plot = _rgb(imread(run / "plots" / name))
        where = _find(pixels, plot)
        assert where, f"{name} is not drawn in the screenshot"
        y, x = where
        region = pixels[y:y + plot.shape[0], x:x + plot.shape[1]]
        assert len(np.unique(region.reshape(-1, 3), axis=0)) > 100, name
        assert np.abs(region.astype(int) - plot).mean() < 2, name


def _rgb(pixels: np.ndarray) -> np.ndarray:
    """imread's floats in [0, 1] (H x W x 3 or 4) as H x W x 3 bytes."""
    return np.round(pixels[..., :3] * 255).astype(np.uint8)


def _find(shot: np.ndarray, image: np.ndarray) -> tuple[int, int] | None:
    """(top, left) where `image` is drawn in `shot`, found by the exact bytes of its middle row."""
    middle = image.shape[0] // 2
    needle = image[middle].tobytes()
    for y, row in enumerate(shot):
        data = row.tobytes()
        at = data.find(needle)
        while at >= 0 and at % 3:  # only at a pixel's start
            at = data.find(needle, at + 1)
        if at >= 0 and y >= middle:
            return y - middle, at // 3
    return None


def test_plain_grpo_run_leaves_out_selfplay_parts(tmp_path, summaries):
    run = tmp_path / "grpo-run"
    run.mkdir()
    rows = [{"step": i, "reward/mean": 0.1 * i, "timing/step": 1.5} for i in range(6)]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    page = write_report(run, out=tmp_path / "out" / "page.html")
    assert page == tmp_path / "out" / "page.html" and not (run / "report.html").exists()
    dom = _dom(tmp_path, page)
    text = " ".join(dom.text)
    assert "grpo-run" in text and "0.100 → 0.400" in text and "Plots" in text
    for part in ("Admission funnel", "Environment library", "Environments", "Held-out", "Calibration", "library"):
        assert part not in text, part
    assert dom.tags.count("img") == 1 and "details" not in dom.tags and "table" not in dom.tags


def test_unreadable_library_is_named_not_fatal(tmp_path):
    run = _selfplay_run(tmp_path)
    (run / "library" / "envs" / "count_vowels" / "meta.json").write_text("{not json")
    dom = _Dom(write_report(run).read_text())
    assert any("the library could not be read" in t and "meta.json" in t for t in dom.text)
    assert "details" not in dom.tags


def test_cli(tmp_path):
    missing = evoforge("report", str(tmp_path / "missing"))
    assert missing.returncode == 1 and missing.stdout == ""
    assert missing.stderr.strip() == f"evoforge report: error: no run directory {tmp_path / 'missing'}"
    (tmp_path / "empty").mkdir()
    empty = evoforge("report", str(tmp_path / "empty"))
    assert empty.returncode == 1
    assert empty.stderr.strip() == f"evoforge report: error: no metrics.jsonl in {tmp_path / 'empty'}"
    assert not (tmp_path / "empty" / "report.html").exists()

    run = _selfplay_run(tmp_path)
    ok = evoforge("report", str(run), "--out", str(tmp_path / "r.html"))
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.strip() == f"wrote {tmp_path / 'r.html'}" and (tmp_path / "r.html").is_file()
    assert "report RUN" in evoforge("--help").stdout

"""The HTML kit of report pages: self-contained markup (inline CSS, no scripts, no fonts, a Content-Security-Policy
that loads nothing but embedded images) where every piece of text is escaped unless it is already Html."""
from __future__ import annotations

import base64
import html
from collections.abc import Iterable
from pathlib import Path
from typing import Any

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; color: #222;
       max-width: 1100px; margin: 0 auto; padding: 16px 24px; line-height: 1.4; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; word-break: break-all; }
h2 { font-size: 1.25em; border-bottom: 1px solid #ddd; padding-bottom: 4px; margin-top: 1.6em; }
.meta { color: #555; margin: 0; }
.figures { display: flex; flex-wrap: wrap; gap: 12px; }
.figure { border: 1px solid #ddd; border-radius: 6px; padding: 8px 12px; min-width: 180px; }
.figure .label { color: #666; font-size: 0.85em; }
.figure .value { font-size: 1.2em; font-weight: 600; }
.figure .note { color: #666; font-size: 0.85em; }
table { border-collapse: collapse; margin: 8px 0; font-size: 0.9em; }
th, td { border: 1px solid #ddd; padding: 3px 8px; text-align: left; vertical-align: top; }
th { background: #f4f4f4; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.plots img { display: block; max-width: 100%; height: auto; margin: 8px 0; border: 1px solid #eee; }
details { border: 1px solid #ddd; border-radius: 6px; padding: 4px 10px; margin: 6px 0; }
summary { cursor: pointer; font-weight: 600; }
pre { background: #f7f7f7; border: 1px solid #e4e4e4; padding: 8px; overflow-x: auto; font-size: 0.85em; }
.pass { color: #1a7f37; } .fail { color: #b42318; }
footer { color: #888; font-size: 0.8em; margin-top: 2em; }
"""
CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"


# -- small helpers ------------------------------------------------------------------------------------
VOID = {"img", "meta", "br"}  # elements without an end tag


class Html(str):
    """Markup that is already safe (built here from escaped parts); everything else gets escaped."""


def esc(value: Any) -> Html:
    return value if isinstance(value, Html) else Html(html.escape(str(value), quote=True))


def tag(name: str, body: Any = "", /, **attrs: Any) -> Html:
    """<name attrs>body</name>; body and attribute values are escaped unless already Html."""
    text = "".join(f' {k.rstrip("_").replace("_", "-")}="{esc(v)}"' for k, v in attrs.items() if v is not None)
    return Html(f"<{name}{text}>" if name in VOID else f"<{name}{text}>{esc(body)}</{name}>")


def join(parts: Iterable[Any]) -> Html:
    return Html("".join(esc(p) for p in parts))


def num(value: Any, digits: int = 3, sign: bool = False) -> str:
    """A number as text, "-" for None (and for anything that is not a number)."""
    if value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
        return "-"
    return f"{value:+.{digits}f}" if sign else f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def interval(ci: Any, digits: int = 3) -> str:
    """[low, high] as "[0.120, 0.380]", "-" when absent."""
    if not isinstance(ci, (list, tuple)) or len(ci) != 2:
        return "-"
    return f"[{num(ci[0], digits)}, {num(ci[1], digits)}]"


def yes_no(value: Any) -> str:
    return "-" if value is None else "yes" if value else "no"


def table(headers: list[str], rows: list[list[Any]], numeric: Iterable[int] = ()) -> Html:
    """A table; the cells of the columns in `numeric` are right-aligned."""
    numeric = set(numeric)
    head = tag("tr", join(tag("th", h) for h in headers))
    body = join(tag("tr", join(tag("td", c, class_="num" if i in numeric else None) for i, c in enumerate(r)))
                for r in rows)
    return tag("table", join([tag("thead", head), tag("tbody", body)]))


def section(title: str, *parts: Any, id_: str | None = None) -> Html:
    return tag("section", join([tag("h2", title), *parts]), id_=id_)


def images(paths: Iterable[Path]) -> Html:
    """PNG files embedded as base64 data URIs."""
    found = [tag("img", "", src="data:image/png;base64," + base64.b64encode(p.read_bytes()).decode("ascii"),
                 alt=p.stem, title=p.name) for p in paths if p.is_file()]
    return tag("div", join(found), class_="plots") if found else Html()


def figure(label: str, value: str, note: str = "") -> Html:
    """One key figure: a label, a value, a note under it."""
    return tag("div", join([tag("div", label, class_="label"), tag("div", value, class_="value"),
                            tag("div", note, class_="note") if note else ""]), class_="figure")


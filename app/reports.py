"""Read a bench report folder (``python -m sss_core bench --out DIR``) whatever files it holds.

No Streamlit here: ``read_report`` returns what was found and a message per file it could not read,
so the Results view can show everything readable and say what was not.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pandas as pd

from sss_core.errors import DataError
from sss_core.evaluation.store import RUN_LOG_FILE, RunLog, read_records

MAX_FILE_BYTES = 60 * 1024 * 1024
MAX_ROWS = 20000
KINDS = {".jsonl": "results", ".csv": "tables", ".md": "markdown", ".html": "plots", ".json": "json"}


@dataclass
class Report:
    """What ``read_report`` found in a folder, by kind, and a message per file it could not read."""

    folder: Path
    markdown: dict[str, str] = field(default_factory=dict)  # file name -> text
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)  # CSV tables
    results: dict[str, pd.DataFrame] = field(default_factory=dict)  # JSON lines, flattened
    plots: dict[str, str] = field(default_factory=dict)  # HTML file name -> HTML text
    json: dict[str, object] = field(default_factory=dict)
    runs: pd.DataFrame | None = None  # the bench's run log (config.json), one row per invocation
    problems: list[str] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        """Whether nothing readable was found."""
        return not (self.markdown or self.tables or self.results or self.plots or self.json)


def read_jsonl(path: Path, max_rows: int = MAX_ROWS) -> tuple[pd.DataFrame, int]:
    """Rows of a JSON-lines file (a bench's results, or a worker's part file), flattened with
    ``pd.json_normalize`` (``metrics.reliability``, ``request.prompt``, ...).

    Read through the bench's store, leniently: returns the frame and the number of unreadable
    lines (e.g. the torn last line of an interrupted run), which are skipped.
    """
    rows, bad = read_records(path, strict=False, max_rows=max_rows)
    return (pd.json_normalize(rows, max_level=2) if rows else pd.DataFrame()), bad


def read_report(folder: str | Path, allowed: Callable[[Path], bool] | None = None) -> Report:
    """Everything readable in ``folder`` (not recursive). Raises FileNotFoundError if it is not a folder.

    ``allowed(path)``: whether a file may be read (the Results view passes ``serving.allowed_folder``,
    so a file linked to somewhere the server does not show is named as a problem, not read).
    """
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} is not a folder; give the --out folder of a bench run (a relative path "
                                f"starts at the server's working directory, {Path.cwd()})")
    rep = Report(folder)
    for path in sorted(folder.iterdir()):
        kind = KINDS.get(path.suffix.lower())
        if kind is None or not path.is_file():
            continue
        if allowed is not None and not allowed(path):
            rep.problems.append(f"{path.name}: links outside the folders this server shows; not read")
            continue
        if path.stat().st_size > MAX_FILE_BYTES:
            rep.problems.append(f"{path.name}: {path.stat().st_size / 2**20:.0f} MB, too large to show")
            continue
        try:
            if kind == "markdown":
                rep.markdown[path.name] = path.read_text(encoding="utf-8", errors="replace")
            elif kind == "tables":
                rep.tables[path.name] = pd.read_csv(path, nrows=MAX_ROWS)
            elif kind == "results":
                df, bad = read_jsonl(path)
                rep.results[path.name] = df
                if bad:
                    rep.problems.append(f"{path.name}: skipped {bad} unreadable line(s)")
            elif kind == "plots":
                rep.plots[path.name] = path.read_text(encoding="utf-8", errors="replace")
            else:
                rep.json[path.name] = json.loads(path.read_text(encoding="utf-8"))
                if path.name == RUN_LOG_FILE:
                    rep.runs = runs_table(path)
        except Exception as exc:  # noqa: BLE001 - any unreadable file is reported, the rest still shown
            rep.problems.append(f"{path.name}: could not read it ({type(exc).__name__}: {exc})")
    return rep


RUN_COLUMNS = ("command", "started", "finished", "wall_seconds", "cpu_seconds", "results_made", "results_skipped",
               "interrupted", "model_name", "model_device", "git_commit")


def runs_table(path: Path) -> pd.DataFrame | None:
    """The invocations of a bench's run log, one row each (the columns of RUN_COLUMNS it has),
    or None when the file is not a bench run log."""
    try:
        runs = RunLog(path).runs()
    except DataError:
        return None
    frame = pd.DataFrame(runs)
    return frame[[c for c in RUN_COLUMNS if c in frame.columns]] if runs else None


def plot_figure(page: str):
    """The plotly figure inside an HTML page written by plotly (``fig.write_html``), or None.

    The Results view draws it with Streamlit's own plotly, which the app serves itself: the page's
    plotly.js (a CDN, or plotly.min.js beside it, neither reachable from an embedded frame) is not
    needed, so a report's plots show with the network off.
    """
    import plotly.graph_objects as go

    at = page.find("Plotly.newPlot(")
    if at < 0:
        return None
    decoder = json.JSONDecoder()
    i = at + len("Plotly.newPlot(")
    parts = []
    try:
        for _ in range(3):  # the div id, the data, the layout
            while page[i] in " \n\r\t,":
                i += 1
            value, i = decoder.raw_decode(page, i)
            parts.append(value)
        return go.Figure({"data": parts[1], "layout": parts[2]}, skip_invalid=True)
    except (ValueError, IndexError, TypeError):
        return None


def offline_page(page: str) -> str:
    """An HTML page with plotly.js inlined in place of a CDN or relative ``<script src>`` (fallback
    for pages ``plot_figure`` cannot read): embedded in the app, a relative path or a CDN would not load."""
    import re

    from plotly.offline import get_plotlyjs

    pattern = re.compile(r'<script[^>]*src="[^"]*plotly[^"]*\.js"[^>]*>\s*</script>', re.IGNORECASE)
    if not pattern.search(page):
        return page
    return pattern.sub(lambda _: "<script>" + get_plotlyjs() + "</script>", page, count=1)


def summary_table(df: pd.DataFrame) -> pd.DataFrame | None:
    """Mean of the metric columns per editor (and C, when present), or None when the columns are missing."""
    group = [c for c in ("editor", "C", "sss_c", "mode", "n") if c in df.columns]
    metrics = [c for c in df.columns if c.split(".")[-1] in ("reliability", "generality", "locality", "portability",
                                                              "lambda_max_before", "lambda_max_after")]
    metrics = [c for c in metrics if pd.api.types.is_numeric_dtype(df[c])]
    if not group or not metrics:
        return None
    return df.groupby(group, dropna=False)[metrics].mean().reset_index()

"""Every HTML page the bench report writes opens with the network off and has a title."""

from __future__ import annotations

import logging
import re

import plotly.graph_objects as go

from sss_core.evaluation.report import html_page, write_html_page


def _fig() -> go.Figure:
    return go.Figure(go.Scatter(x=[0, 0.5, 1], y=[1, 0.8, 0.2]))


def test_directory_pages_load_plotly_from_beside_them(tmp_path):
    path = write_html_page(_fig(), tmp_path / "c_sweep.html", "SSS bench: ablation on C (world)")
    page = path.read_text()
    assert '<script charset="utf-8" src="plotly.min.js"></script>' in page
    assert re.findall(r'<script[^>]*\bsrc="([^"]*)"', page) == ["plotly.min.js"]
    assert "<title>SSS bench: ablation on C (world)</title>" in page
    bundle = tmp_path / "plotly.min.js"
    assert bundle.stat().st_size > 1_000_000 and "Plotly" in bundle.read_text()[:5000]


def test_inline_pages_hold_plotly_themselves():
    page = html_page(_fig(), "a <title> & more", "inline")
    assert "<title>a &lt;title&gt; &amp; more</title>" in page
    assert not re.search(r"<script[^>]*\bsrc=", page)  # no script fetched from anywhere
    assert len(page) > 1_000_000  # plotly.js inside


def test_a_cdn_request_is_written_offline_with_a_warning(tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        page = write_html_page(_fig(), tmp_path / "sequential.html", "t", "cdn").read_text()
    assert re.findall(r'<script[^>]*\bsrc="([^"]*)"', page) == ["plotly.min.js"]
    assert (tmp_path / "plotly.min.js").exists()
    assert any("blank offline" in r.getMessage() for r in caplog.records)

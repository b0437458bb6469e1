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


def test_defaults_inline_for_a_page_and_directory_for_a_file(tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        page = html_page(_fig(), "t")
        path = write_html_page(_fig(), tmp_path / "a.html", "t")
    assert caplog.records == []  # the defaults need no warning
    assert len(page) > 1_000_000 and page.startswith("<!doctype html>\n<html>\n<head><title>t</title>") and page.count("<title>t</title>") == 1
    assert re.findall(r'<script[^>]*\bsrc="([^"]*)"', path.read_text()) == ["plotly.min.js"]
    assert (tmp_path / "plotly.min.js").exists()


def test_an_inline_file_needs_nothing_beside_it(tmp_path):
    path = write_html_page(_fig(), tmp_path / "a.html", "t", "inline")
    assert len(path.read_text(encoding="utf-8")) > 1_000_000 and list(tmp_path.iterdir()) == [path]


def test_the_cdn_warning_names_what_was_asked(caplog):
    with caplog.at_level(logging.WARNING, logger="sss_core.evaluation.report"):
        html_page(_fig(), "t", "cdn")
    assert [r.getMessage() for r in caplog.records] == [
        "plotly.js from 'cdn' would leave the plot blank offline; loading it from plotly.min.js beside the page "
        "instead"]

"""The report page as a browser shows it: a real report rendered in headless Chromium.

Every figure the experiment allows is drawn and shown at its own size, and no text or
image of the laid-out page overlaps another. Text inside a figure's PNG is past the
browser's reach: test_report.py checks it in matplotlib before the figure is saved.

Playwright drives Debian's ``chromium`` (never a browser Playwright downloads, so there is
nothing to fetch at test time); the test skips, naming what is missing, without either.

The README's picture is drawn from the demo's own page (``scripts/readme_figure.py``),
not from this test's experiment.
"""

from __future__ import annotations

import shutil
import struct
from pathlib import Path
from typing import Any

import pytest

from eegtune.ensembles import EnsembleRequest, build_ensemble
from eegtune.reports import ReportRequest, build_report

try:
    from playwright.sync_api import sync_playwright
except ImportError:  # an optional dev tool: without it the test skips, saying so
    sync_playwright = None


def _find_chromium() -> str | None:
    if Path("/usr/bin/chromium").exists():
        return "/usr/bin/chromium"
    return shutil.which("chromium")


CHROMIUM = _find_chromium()
# On the project's closed network Chromium otherwise stalls or logs errors reaching
# Google's services; no sandbox because CI runs as root in a container.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
WIDTH = 1280
EXPERIMENT_FIGURES = (
    "history",
    "compute",
    "importances",
    "focus",
    "folds",
    "predictions",
    "subject-errors",
)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(600),  # mostly the shared 3-trial experiment, on a busy machine
    pytest.mark.skipif(
        CHROMIUM is None, reason="chromium not installed (apt-get install chromium)"
    ),
    pytest.mark.skipif(
        sync_playwright is None, reason="playwright not importable (pip install playwright)"
    ),
]

# One round trip for every figure: the browser's layout, not the HTML, is under test.
FIGURES_JS = """() => [...document.querySelectorAll('figure[data-figure]')].map(f => {
    const box = f.getBoundingClientRect();
    const img = f.querySelector('img');
    const imgBox = img ? img.getBoundingClientRect() : null;
    return {
        key: f.dataset.figure,
        drawn: f.dataset.drawn === 'true',
        width: box.width,
        height: box.height,
        naturalWidth: img ? img.naturalWidth : null,
        imgWidth: imgBox ? imgBox.width : null,
        imgHeight: imgBox ? imgBox.height : null,
        note: f.querySelector('.note')?.textContent ?? null,
    };
})"""
# Pairs of text-bearing elements (and images) whose boxes overlap, as laid out: what the
# browser can tell of text running into text. An element and one inside it are no pair;
# table cells share their collapsed border, so boxes must cross by over a pixel each way.
OVERLAPS_JS = """() => {
    const boxes = [...document.querySelectorAll(
        'h1, h2, h3, p, dt, dd, th, td, figcaption, img'
    )].map(e => ({e, r: e.getBoundingClientRect()})).filter(b => b.r.width && b.r.height);
    const name = e => `${e.tagName.toLowerCase()} "${(e.alt || e.textContent).slice(0, 50)}"`;
    const found = [];
    for (let i = 0; i < boxes.length; i++) {
        for (let j = i + 1; j < boxes.length; j++) {
            const [a, b] = [boxes[i], boxes[j]];
            if (a.e.contains(b.e) || b.e.contains(a.e)) continue;
            const w = Math.min(a.r.right, b.r.right) - Math.max(a.r.left, b.r.left);
            const h = Math.min(a.r.bottom, b.r.bottom) - Math.max(a.r.top, b.r.top);
            if (w > 1 && h > 1) found.push(`${name(a.e)} overlaps ${name(b.e)}`);
        }
    }
    return found;
}"""


def _png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return struct.unpack(">II", head[16:24])


def test_report_renders_in_chromium_with_every_figure(finished_experiment, tmp_path):
    ens = tmp_path / "ens"
    build_ensemble(
        EnsembleRequest(
            experiments=(str(finished_experiment),),
            challenge=1,
            out=str(ens),
            method="greedy",
            top_k=5,
            size=25,
            seeds=0,
        ),
        log=lambda _: None,
    )
    report, _ = build_report(
        ReportRequest(
            experiments=(str(finished_experiment),),
            out=str(tmp_path / "report.html"),
            ensembles=(str(ens),),
        )
    )
    shot = tmp_path / "report.png"
    errors: list[str] = []
    requests: list[str] = []

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": WIDTH, "height": 900})
            page.on(
                "console",
                lambda msg: errors.append(f"console: {msg.text}") if msg.type == "error" else None,
            )
            page.on("pageerror", lambda exc: errors.append(f"page error: {exc}"))
            page.on("request", lambda req: requests.append(req.url))
            page.goto(report.resolve().as_uri(), wait_until="load")
            figures: list[dict[str, Any]] = page.evaluate(FIGURES_JS)
            overlaps: list[str] = page.evaluate(OVERLAPS_JS)
            page.screenshot(path=str(shot), full_page=True)
        finally:
            browser.close()

    assert errors == []
    # The page promises to be self-contained: the only load is the file itself.
    assert [u for u in requests if not u.startswith(("file:", "data:"))] == []

    assert overlaps == []
    by_key = {f["key"]: f for f in figures}
    name = finished_experiment.name
    expected = {f"{name}-{k}" for k in EXPERIMENT_FIGURES} | {f"ensemble-{ens.name}"}
    assert expected <= by_key.keys(), f"missing figures: {sorted(expected - by_key.keys())}"
    # This experiment has everything every figure needs: a note in place of any is a fault.
    notes = {k: by_key[k]["note"] for k in sorted(expected) if not by_key[k]["drawn"]}
    assert notes == {}, f"figures not drawn: {notes}"
    for f in figures:
        assert f["width"] > 0 and f["height"] > 0, f"{f['key']} has no box: {f}"
    for f in (by_key[k] for k in sorted(expected)):
        assert f["naturalWidth"], f"{f['key']}'s image did not decode: {f}"
        assert f["imgWidth"] > 0 and f["imgHeight"] > 0, f"{f['key']} image not shown: {f}"
        # Shown at the size it was drawn: scaled down, its text shrinks past reading.
        assert f["imgWidth"] >= f["naturalWidth"] - 1, f"{f['key']} is shrunk to fit: {f}"

    width, _ = _png_size(shot)
    assert shot.stat().st_size > 20_000, "the screenshot is near blank"
    assert width >= 800


def test_the_overlap_check_sees_text_laid_over_text():
    """OVERLAPS_JS can fail: a caption pulled up over a table's cells is reported, the same
    page laid out normally is not."""
    table = (
        "<table><tr><th>method</th><th>nested NRMSE</th></tr>"
        "<tr><td>mean</td><td>0.9871</td></tr></table>"
    )
    caption = "<p{}>a caption under the table</p>"
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": WIDTH, "height": 900})
            page.set_content(table + caption.format(""))
            clean = page.evaluate(OVERLAPS_JS)
            page.set_content(table + caption.format(' style="margin-top: -2.5em"'))
            pulled_up = page.evaluate(OVERLAPS_JS)
        finally:
            browser.close()
    assert clean == []
    assert any('p "a caption under the table"' in o for o in pulled_up), pulled_up

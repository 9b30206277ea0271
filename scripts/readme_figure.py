"""The README's picture of a report: the top of the demo's own page, as Chromium draws it.

    make demo && .venv/bin/python scripts/readme_figure.py            # demo_out/report.html
    .venv/bin/python scripts/readme_figure.py --report PAGE --out docs/report.png

Uses Playwright with the system's ``chromium`` (nothing is downloaded).
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

MAX_HEIGHT = 2200  # px of the page's top: the header, the leaderboard, the first figures
WIDTH = 1200


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--report", default="demo_out/report.html")
    ap.add_argument("--out", default="docs/report.png")
    args = ap.parse_args()
    report = Path(args.report).resolve()
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if not report.exists():
        print(f"{report}: no report; run `make demo` first", file=sys.stderr)
        return 2
    if chromium is None:
        print("no chromium on this machine", file=sys.stderr)
        return 2
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        # Headless, and nothing reaching out to the network (the page is self-contained).
        flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run"]  # fmt: skip
        browser = pw.chromium.launch(executable_path=chromium, args=flags)
        try:
            page = browser.new_page(viewport={"width": WIDTH, "height": 900})
            page.goto(report.as_uri())
            page.wait_for_load_state("load")
            height = page.evaluate("document.documentElement.scrollHeight")
            clip = {"x": 0, "y": 0, "width": WIDTH, "height": min(height, MAX_HEIGHT)}
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=args.out, full_page=True, clip=clip)
        finally:
            browser.close()
    print(f"wrote {args.out} from {report}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

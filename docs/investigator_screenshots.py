"""The README's screenshots of the investigator page: `ireid serve`'s defaults (a finished demo) driven in Debian's
chromium through playwright.

    .venv/bin/python docs/investigator_screenshots.py [--demo runs/demo] [--out docs]
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from playwright.sync_api import sync_playwright

from ireid.app.investigator.server import serving
from ireid.app.serve_cli import build_investigator, configure


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    configure(parser)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent)
    args = parser.parse_args()
    investigator = build_investigator(args)
    with serving(investigator) as url, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=shutil.which("chromium"), args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1280, "height": 860})
        page.goto(f"{url}/")
        page.fill("#description", "I saw a woman in a red top.")
        page.screenshot(path=str(args.out / "investigator-1-describe.png"))
        page.click("#start")
        page.wait_for_selector(".candidate")
        page.fill("#answer-text", "She was at a train station.")
        page.click("#answer-send")
        page.wait_for_selector("#history li")
        page.fill("#answer-text", "Her top had a checked pattern.")
        page.click("#answer-send")
        page.wait_for_function("document.querySelectorAll('#history li').length == 2")
        page.locator(".candidate").nth(1).locator("button.reject").click()
        page.wait_for_function("document.getElementById('removed').textContent.length > 0")
        page.screenshot(path=str(args.out / "investigator-2-dialogue.png"))
        browser.close()
    print(f"wrote {args.out}/investigator-*.png")


if __name__ == "__main__":
    main()

"""The page driven in headless Chromium (Debian's `chromium`, through playwright): one whole session."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from ireid.app.investigator.server import serving
from ireid.app.investigator.session import EXPORT_FORMAT, Investigator

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="browser tests need Debian's chromium: `make browser` (apt-get install chromium)"
)


@pytest.fixture
def url(investigator: Investigator) -> Iterator[str]:
    with serving(investigator) as base:
        yield base


def test_describe_answer_twice_mark_one_and_export(url: str, tmp_path: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1200, "height": 900}, accept_downloads=True)
        page.goto(url)
        expect(page.locator("#info")).to_contain_text("images")
        page.fill("#description", "I saw a woman in a red top.")
        page.click("#start")
        expect(page.locator(".candidate")).to_have_count(6)
        first_question = page.locator("#question").inner_text()
        assert first_question
        page.click("#answer-yes")
        expect(page.locator("#history li")).to_have_count(1)
        page.fill("#answer-text", "She wore black shoes.")
        page.click("#answer-send")
        expect(page.locator("#history li")).to_have_count(2)
        expect(page.locator("#plot circle")).to_have_count(3)  # the description and two answers
        marked = page.locator(".candidate").first.get_attribute("data-key")
        page.locator(".candidate").first.locator("button.reject").click()
        expect(page.locator("#removed")).to_contain_text("removed")
        assert marked not in page.locator(".candidate").evaluate_all("cards => cards.map(c => c.dataset.key)")
        with page.expect_download() as download:
            page.click("#export-json")
        exported = json.loads(Path(download.value.path()).read_text())
        assert exported["format"] == EXPORT_FORMAT and len(exported["history"]) == 2
        assert exported["history"][0]["question"] == first_question and exported["rejected"] == [marked]
        page.fill("#answer-text", "")
        page.click("#answer-send")
        expect(page.locator("#error")).to_contain_text("answer: empty text")
        browser.close()

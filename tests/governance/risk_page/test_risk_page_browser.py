"""The risk page in a real headless Chromium (Debian's, through Playwright) against a real
topology: runtime, lineage store and gateway, with traffic scored through the gateway.

A risk officer searches a customer's decisions, opens one (its model, reasons and place in the
chain), replays it, opens the serving timeline and the drift view. Each test saves a screenshot
of its page in ``SCOREGATE_SCREENSHOTS`` (default: a folder of the run's temporary directory).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, async_playwright, expect

from loadtests.local.demo import Scored, check_lineage, score_samples
from loadtests.local.routes import with_canary
from loadtests.local.topology import Topology

CHROMIUM = "/usr/bin/chromium"

pytestmark = pytest.mark.skipif(
    shutil.which(CHROMIUM) is None, reason="Debian's chromium is not installed (make system-deps)"
)


@pytest.fixture(scope="module")
def topology(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Topology]:
    """The conftest's topology with card-fraud's challenger as a 30% canary, so the timeline
    has two versions sharing the traffic."""
    topo = Topology(tmp_path_factory.mktemp("topology"), model_dir, routes=with_canary(0.3))
    topo.start()
    try:
        yield topo
    finally:
        topo.stop()


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = os.environ.get("SCOREGATE_SCREENSHOTS")
    path = Path(folder) if folder else tmp_path_factory.mktemp("screenshots")
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="module")
async def scored(topology: Topology) -> list[Scored]:
    results = await score_samples(
        topology.gateway.address, {"card-fraud": 120, "credit-risk": 60}, seed=11
    )
    await check_lineage(topology.lineage.address, results, timeout_s=30.0)
    return results


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            yield launched
        finally:
            await launched.close()


@pytest.fixture
async def page(browser: Browser) -> AsyncIterator[Page]:
    context = await browser.new_context(viewport={"width": 1280, "height": 900})
    opened = await context.new_page()
    opened.set_default_timeout(20_000)
    try:
        yield opened
    finally:
        await context.close()


def _web(topology: Topology) -> str:
    return str(topology.lineage.info["web"])


async def _shoot(page: Page, folder: Path, name: str) -> None:
    path = folder / f"{name}.png"
    await page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 10_000


async def test_search_by_entity_key(
    topology: Topology, scored: list[Scored], page: Page, screenshots: Path
) -> None:
    entity = "cust-005"
    await page.goto(_web(topology))
    await page.fill("input[name=entity_key]", entity)
    await page.click("button[type=submit]")
    rows = page.locator("#results tr")
    await expect(rows.nth(1)).to_be_visible()
    texts = await rows.all_inner_texts()
    listed = texts[1:]
    assert listed and all(entity in row for row in listed)
    # The demo's requests give entity keys by index modulo 97: every decision of the customer.
    expected = {
        s.response.decision_id
        for s in scored
        if s.request_id.rsplit("-", 1)[1].isdigit()
        and int(s.request_id.rsplit("-", 1)[1]) % 97 == 5
    }
    links = await page.locator("#results a").all_inner_texts()
    assert set(links) == expected
    await _shoot(page, screenshots, "search")


async def test_open_a_decision(
    topology: Topology, scored: list[Scored], page: Page, screenshots: Path
) -> None:
    explained = next(s.response for s in scored if s.response.reason_codes)
    await page.goto(_web(topology) + f"?decision_id={explained.decision_id}")
    await expect(page.locator("h1")).to_contain_text(explained.decision_id)
    model = page.locator("#model")
    await expect(model).to_contain_text(explained.model_name)
    await expect(model).to_contain_text(explained.model_version)
    await expect(model).to_contain_text(explained.model_sha256)
    reasons = page.locator("#reasons")
    for reason in explained.reason_codes:
        await expect(reasons).to_contain_text(reason.code)
    await expect(page.locator("#seq")).to_contain_text("entry ")
    seq_text = await page.locator("#seq").inner_text()
    position, size = (int(n) for n in seq_text.removeprefix("entry ").split(" of "))
    assert 1 <= position <= size
    await _shoot(page, screenshots, "decision")
    await page.click("#replay")
    await expect(page.locator("#replay-result")).to_have_text("MATCH")
    await _shoot(page, screenshots, "replay")


async def test_open_the_serving_timeline(
    topology: Topology, scored: list[Scored], page: Page, screenshots: Path
) -> None:
    await page.goto(_web(topology))
    await page.click("text=Serving timeline")
    await page.select_option("select[name=decision_point]", "card-fraud")
    await page.click("button[type=submit]")
    await expect(page.locator("h1")).to_contain_text("card-fraud")
    periods = page.locator("#periods")
    await expect(periods).to_contain_text("still serving")
    await expect(periods).to_contain_text("30%")
    await expect(periods).to_contain_text("70%")
    served = {
        (s.response.model_name, s.response.model_version)
        for s in scored
        # Routed arms only: a request pinned to a version is not part of the routing.
        if s.response.decision_point == "card-fraud" and s.response.arm in ("primary", "canary")
    }
    rows = await periods.locator("tr").all_inner_texts()
    for name, version in served:
        assert any(row.startswith(f"{name}\t{version}\t") for row in rows), (name, version, rows)
    await expect(page.locator("svg")).to_have_count(1)
    await _shoot(page, screenshots, "timeline")


async def test_open_the_drift_view(
    topology: Topology, scored: list[Scored], page: Page, screenshots: Path
) -> None:
    await page.goto(_web(topology))
    await page.click("text=Drift")
    await page.select_option("select[name=decision_point]", "credit-risk")
    await page.fill("input[name=step_hours]", "1")
    await page.click("button[type=submit]")
    await expect(page.locator("h1")).to_contain_text("credit-risk")
    section = page.locator("section.arm").first
    await expect(section).to_contain_text("arm primary")
    counted = sum(1 for s in scored if s.response.decision_point == "credit-risk")
    await expect(section).to_contain_text(f"{counted:,} decisions")
    await expect(section.locator("table.measures")).to_contain_text("score")
    assert await section.locator("svg").count() >= 2  # PSI over time and the score's bins
    await _shoot(page, screenshots, "drift")


async def test_the_committee_report_opens_in_the_browser(
    topology: Topology, scored: list[Scored], page: Page, screenshots: Path, tmp_path: Path
) -> None:
    from governance.cli import lineage_main

    out = tmp_path / "credit-risk.html"
    argv = ["report", "--point", "credit-risk", "--out", str(out)]
    assert lineage_main([*argv, "--lineage", topology.lineage.address]) == 0
    await page.goto(out.as_uri())
    await expect(page.locator("h1")).to_contain_text("credit-risk")
    assert await page.locator("img").count() >= 2
    await _shoot(page, screenshots, "report")

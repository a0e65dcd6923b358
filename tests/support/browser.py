"""Chromium for the browser tests: Debian's package driven by Playwright (never a download).

``playwright install`` cannot reach its CDN from our machines, so the tests launch the
system's chromium (:func:`ioc.deploy.local.browser.ensure_chromium`) with
``executable_path``, headless, offline-quiet flags and a fresh profile per test.
"""

from __future__ import annotations

import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from playwright.async_api import BrowserContext, Page, async_playwright

from ioc.deploy.local.browser import CHROMIUM_ARGS, ensure_chromium


@asynccontextmanager
async def chromium(**context: Any) -> AsyncIterator[BrowserContext]:
    """A headless chromium context with its own user data dir (removed afterwards)."""
    executable = ensure_chromium()
    with tempfile.TemporaryDirectory(prefix="ioc-chromium-") as profile:
        async with async_playwright() as pw:
            ctx = await pw.chromium.launch_persistent_context(
                profile,
                executable_path=str(executable),
                headless=True,
                args=CHROMIUM_ARGS,
                locale="vi-VN",
                timezone_id="Asia/Ho_Chi_Minh",
                **context,
            )
            try:
                yield ctx
            finally:
                await ctx.close()


async def no_horizontal_scroll(page: Page) -> tuple[int, int]:
    """(scrollWidth, innerWidth): the page fits its viewport when the first <= the second."""
    width: list[int] = await page.evaluate(
        "[document.documentElement.scrollWidth, window.innerWidth]"
    )
    return width[0], width[1]


async def rendering_fonts(page: Page, selector: str) -> list[dict[str, Any]]:
    """The platform fonts chromium actually drew ``selector``'s text with (DevTools
    ``CSS.getPlatformFontsForNode``): family names and glyph counts, so a test can tell real
    Vietnamese glyphs from a fallback font's boxes."""
    cdp = await page.context.new_cdp_session(page)
    try:
        await cdp.send("DOM.enable")
        await cdp.send("CSS.enable")
        doc = await cdp.send("DOM.getDocument")
        node = await cdp.send(
            "DOM.querySelector", {"nodeId": doc["root"]["nodeId"], "selector": selector}
        )
        result = await cdp.send("CSS.getPlatformFontsForNode", {"nodeId": node["nodeId"]})
        fonts: list[dict[str, Any]] = result["fonts"]
        return fonts
    finally:
        await cdp.detach()

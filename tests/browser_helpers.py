"""Debian's Chromium driven by Playwright, shared by the page tests (``playwright install``
cannot download here; ``./run test`` installs the ``chromium`` package)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]  # fmt: skip
#: Where the page tests save their screenshots.
ARTIFACTS = Path(os.environ.get("OFFLOAD_TEST_ARTIFACTS", "test-artifacts"))


def chromium() -> Iterator[Any]:
    """A launched browser, for a module-scoped fixture to yield from."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        launched.close()

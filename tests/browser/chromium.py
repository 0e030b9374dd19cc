"""Debian's Chromium (the `chromium` package) driven by Playwright: the one way the tests and
the benchmark start a browser."""

from __future__ import annotations

import os
from pathlib import Path

from playwright.sync_api import Browser, Playwright

CHROMIUM = Path(os.environ.get("CASCADE_CHROMIUM", "/usr/bin/chromium"))
# Quiet, offline, reproducible: nothing of the browser's own talks to the network.
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def chromium_missing() -> str | None:
    """Why the browser cannot run here, or None."""
    if not CHROMIUM.is_file() or not os.access(CHROMIUM, os.X_OK):
        return (f"{CHROMIUM} is missing: install Debian's chromium "
                "(apt-get update && apt-get install -y chromium)")
    return None


def launch(playwright: Playwright) -> Browser:
    # Playwright's launch() gives every browser a fresh temporary user-data-dir of its own.
    return playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=ARGS)

"""Headless Chromium (Playwright) in a phone's namespace: open the portal by name, tap "Start".

``python -m tests.cabinnet.browser URL OUT.json SHOT.png`` (run behind :mod:`tests.sync.nsguard`):
opens URL, waits for the page, records where it landed and its title, taps ``#start`` and waits for
the accept call's answer; writes ``{"url", "title", "accept_status", "accept"}`` to OUT.json.
"""

from __future__ import annotations

import json
import sys

from playwright.sync_api import sync_playwright

CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run"]


def main() -> int:
    url, out, shot = sys.argv[1:4]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        try:
            page = browser.new_page()
            page.goto(url, wait_until="load", timeout=30_000)
            page.wait_for_selector("#start", timeout=30_000)
            result = {"url": page.url, "title": page.title()}
            with page.expect_response(lambda r: r.url.endswith("/api/v1/portal/accept"),
                                      timeout=30_000) as resp:
                page.click("#start")
            result["accept_status"] = resp.value.status
            result["accept"] = resp.value.json()
            page.screenshot(path=shot)
        finally:
            browser.close()
    with open(out, "w") as f:
        json.dump(result, f)
    return 0


if __name__ == "__main__":
    sys.exit(main())

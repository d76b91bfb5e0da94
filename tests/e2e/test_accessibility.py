"""WCAG 2.1 AA on every passenger view: axe-core in Debian's Chromium against the real service.

Each view of the portal (catalog, player, reader of an HTML book and of an EPUB, flight, menu,
feedback) at phone (390 x 844)
and laptop (1280 x 800) size, in English and French, and the catalog and menu in Arabic (right
to left), is checked by axe-core (npm ``axe-core``, injected into the page) with the WCAG 2.0/2.1
A and AA rules, and for reflow (nothing wider than the viewport): 0 violations. The film and the
book are real packaged content. Screenshots go to ``var/artifacts/accessibility/``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from .service import Service, launch_chromium

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "var" / "artifacts" / "accessibility"
AXE = REPO / "var" / "npm" / "node_modules" / "axe-core" / "axe.min.js"
SIZES = {"phone": {"width": 390, "height": 844}, "laptop": {"width": 1280, "height": 800}}
VIEWS = ("catalog", "play/big-buck-bunny", "read/genesis-kjv", "read/live-manual-en", "flight",
         "menu", "feedback")
RULES = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]


@pytest.fixture(scope="module")
def service(portal_service: Service) -> Service:
    assert AXE.exists(), "axe-core is installed by `make content` (npm)"
    return portal_service  # film, HTML book and EPUB installed (tests/e2e/conftest.py)


def _describe(violations: list[dict[str, Any]]) -> str:
    return "\n".join(f"{v['id']} ({v['impact']}): {v['help']} -> "
                     + "; ".join(n["target"][0] if n["target"] else "?" for n in v["nodes"][:4])
                     for v in violations)


def _check(page: Any, name: str) -> list[dict[str, Any]]:
    page.add_script_tag(path=str(AXE))
    result = page.evaluate("(rules) => axe.run(document, {runOnly: {type: 'tag', values: rules}})",
                           RULES)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
    return list(result["violations"])


@pytest.mark.parametrize("size", sorted(SIZES))
def test_every_passenger_view_has_no_axe_violation(service: Service, size: str) -> None:
    from playwright.sync_api import sync_playwright

    base = f"http://127.0.0.1:{service.passenger_port}"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    found: dict[str, str] = {}
    checked = 0
    with sync_playwright() as p:
        browser = launch_chromium(p)
        try:
            for lang, views in (("en", VIEWS), ("fr", VIEWS), ("ar", ("catalog", "menu"))):
                ctx = browser.new_context(locale=lang, viewport=SIZES[size])
                page = ctx.new_page()
                page.goto(base + "/portal/")
                page.wait_for_function("window.portalReady === true", timeout=15000)
                for view in views:
                    page.evaluate(f"location.hash = '#{view}'")
                    sec = view.split("/")[0]
                    page.wait_for_function(f"!document.getElementById('view-{sec}').hidden")
                    if sec == "read":
                        page.wait_for_selector("#toc a")
                        if view.endswith("live-manual-en"):
                            page.wait_for_function("window.readerReady === 'live-manual-en'",
                                                   timeout=30000)
                    if sec == "feedback":
                        page.wait_for_selector("#survey fieldset")
                    name = f"{size}-{lang}-{view.replace('/', '-')}"
                    v = _check(page, name)
                    checked += 1
                    # reflow (WCAG 1.4.10): nothing wider than the viewport
                    over = page.evaluate("document.documentElement.scrollWidth - innerWidth")
                    if over > 0:
                        v.append({"id": "reflow", "impact": "serious", "nodes": [],
                                  "help": f"the page is {over} px wider than the viewport"})
                    if v:
                        found[name] = _describe(v)
                if lang == "en":
                    # axe is live: the old button colour (white on #4fa3ff, 2.62:1) is caught
                    page.evaluate("location.hash = '#menu'")
                    page.evaluate("document.getElementById('order').style.background = '#4fa3ff'")
                    ids = {x["id"] for x in _check(page, f"{size}-selfcheck")}
                    assert "color-contrast" in ids
                    page.evaluate("document.getElementById('order').style.background = ''")
                ctx.close()
        finally:
            browser.close()
    assert checked == 2 * len(VIEWS) + 2
    assert found == {}, json.dumps(found, indent=1, ensure_ascii=False)

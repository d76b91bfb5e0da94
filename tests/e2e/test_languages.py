"""The portal's languages in Debian's Chromium against the real service (issue 19, portal part).

A French phone (Accept-Language fr-FR) gets the page in French at the first paint; the switch
changes every visible string to Spanish, in place, and the choice survives a reload; Arabic
mirrors the layout (``dir=rtl``: the title moves to the right). Screenshots go to
``var/artifacts/languages/``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from importlib import resources
from pathlib import Path

import pytest

from .service import CHROMIUM, Service, launch_chromium

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "var" / "artifacts" / "languages"
FILM = REPO / "var" / "content" / "big-buck-bunny"
I18N = resources.files("appliance.web.passenger").joinpath("assets", "i18n")


def _cat(lang: str) -> dict[str, str]:
    return dict(json.loads(I18N.joinpath(f"{lang}.json").read_text(encoding="utf-8")))


@pytest.fixture
def service(tmp_path: Path) -> Iterator[Service]:
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian chromium not installed")
    pytest.importorskip("playwright")
    svc = Service(tmp_path)
    cfg = svc.write_config()
    if (FILM / "package.json").exists():
        subprocess.run([sys.executable, "-m", "appliance.cli", "content", "install", "--config",
                        str(cfg), str(FILM)], check=True, cwd=tmp_path)
    svc.start()
    yield svc
    svc.stop()


VISIBLE_I18N = """() => Array.from(document.querySelectorAll('[data-i18n]'))
  .filter((e) => e.offsetParent !== null || e.tagName === 'TITLE')
  .map((e) => [e.dataset.i18n, e.textContent])"""


def test_language_from_the_phone_then_the_switch(service: Service) -> None:
    from playwright.sync_api import sync_playwright

    base = f"http://127.0.0.1:{service.passenger_port}"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    en, fr, es, ar = _cat("en"), _cat("fr"), _cat("es"), _cat("ar")
    with sync_playwright() as p:
        browser = launch_chromium(p)
        try:
            ctx = browser.new_context(locale="fr-FR", viewport={"width": 390, "height": 800})
            page = ctx.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            # the first paint is French: the server filled the page before sending it
            resp = page.goto(base + "/portal/")
            assert resp is not None and resp.headers["content-language"] == "fr"
            assert "Accept-Language" in resp.headers["vary"]
            page.wait_for_function("window.portalReady === true", timeout=15000)
            assert page.evaluate("document.documentElement.lang") == "fr"
            assert page.title() == fr["app.title"]
            for key, text in page.evaluate(VISIBLE_I18N):
                assert text == fr[key], key
            if (FILM / "package.json").exists():  # the film's own French title and rating
                man = json.loads((FILM / "package.json").read_text())
                if "fr" in man.get("localized", {}):
                    assert man["localized"]["fr"]["title"] in page.inner_text("#films")
            page.screenshot(path=str(ARTIFACTS / "fr-phone.png"), full_page=True)

            # the switch: every visible string changes, in place (no reload)
            page.evaluate("window.notReloaded = true")
            english_before = page.evaluate("document.body.innerText")
            page.select_option("#lang", "es")
            page.wait_for_function("document.documentElement.lang === 'es'")
            assert page.evaluate("window.notReloaded") is True
            for key, text in page.evaluate(VISIBLE_I18N):
                assert text == es[key], key
            body = page.evaluate("document.body.innerText")
            leftover = [v for k, v in fr.items() if not k.startswith("_") and len(v) > 3
                        and v != es[k] and v in body and v in english_before]
            assert leftover == []
            # every view, not only the first: menu, feedback, flight
            for view, probe in (("menu", "menu.order"), ("feedback", "feedback.title"),
                                ("flight", "flight.ground_speed")):
                page.evaluate(f"location.hash = '#{view}'")
                page.wait_for_function(f"!document.getElementById('view-{view}').hidden")
                assert es[probe] in page.inner_text(f"#view-{view}")
            page.wait_for_selector("#survey fieldset legend", state="attached")
            assert es["survey.overall"] in page.text_content("#survey")
            assert en["survey.overall"] not in page.text_content("#survey")
            # the choice is kept: a reload is served in Spanish by the server
            page.reload()
            page.wait_for_function("window.portalReady === true", timeout=15000)
            assert page.evaluate("document.documentElement.lang") == "es"

            # right to left: the layout is mirrored
            page.evaluate("location.hash = '#catalog'")
            x_ltr = page.evaluate("document.querySelector('header h1').getBoundingClientRect().x")
            page.select_option("#lang", "ar")
            page.wait_for_function("document.documentElement.dir === 'rtl'")
            assert page.title() == ar["app.title"]
            x_rtl = page.evaluate("document.querySelector('header h1').getBoundingClientRect().x")
            assert x_ltr < 100 < x_rtl, (x_ltr, x_rtl)
            if (FILM / "package.json").exists():  # the film's length in the catalog's words
                assert ar["catalog.seconds"].split()[-1] in page.inner_text("#films")
            page.screenshot(path=str(ARTIFACTS / "ar-phone.png"), full_page=True)
            assert errors == []
        finally:
            browser.close()

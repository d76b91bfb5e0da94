"""The onboard shop in Debian's Chromium against the real service (issue 16, acceptance 3).

A passenger's page shows the packaged menu; the hangar station builds, signs and pushes a new
menu bundle (``appliance hangar`` CLI, over the admin port's intake): the new prices replace the
old ones. The stale page then orders an item that the new menu dropped: refused with a sentence
(not a code). A missing seat: a sentence. Reopened, the menu shows the new price and the stock;
a valid order shows its number and total; the crew's page (admin port, logged in as ``crew``)
marks it preparing then delivered and the passenger's page shows each status; the stock went
down on both pages. Screenshots go to ``var/artifacts/shop/``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from importlib import resources
from pathlib import Path

import pytest

from appliance.web.admin.auth import hash_password

from .service import CHROMIUM, TOKEN, Service, launch_chromium
from .test_accessibility import AXE, RULES, _describe

pytestmark = [pytest.mark.e2e, pytest.mark.system]  # ~50 s on a loaded machine

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "var" / "artifacts" / "shop"
EN = json.loads(resources.files("appliance.web.passenger").joinpath("assets", "i18n", "en.json")
                .read_text(encoding="utf-8"))
NEW_MENU = """
[[item]]
sku = "COFFEE"
name = {en = "Coffee", fr = "Café"}
price = 3.4
currency = "EUR"
stock = 5
[[item]]
sku = "TEA"
name = "Tea"
price = 2.8
currency = "EUR"
stock = 9
"""


def _hangar(*args: str, cwd: Path) -> str:
    r = subprocess.run([sys.executable, "-m", "appliance.cli", "hangar", *args], cwd=cwd,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, f"hangar {args[0]}: {r.stdout}\n{r.stderr}"
    return r.stdout


@pytest.fixture
def service(tmp_path: Path) -> Iterator[Service]:
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian chromium not installed")
    pytest.importorskip("playwright")
    _hangar("keygen", str(tmp_path / "menu.key"), cwd=tmp_path)
    pub = (tmp_path / "menu.key.pub").read_text().strip()
    svc = Service(tmp_path)
    svc.extra_config = f"""
[[admin_users]]
name = "purser"
role = "crew"
password_hash = "{hash_password('purser-pass')}"
[intake.roles.content]
keys = ["{pub}"]
threshold = 1
"""
    svc.start()
    yield svc
    code = svc.stop()
    assert code == 0, f"service did not stop cleanly ({code}):\n{svc.log()}"


def _status(page) -> str:  # type: ignore[no-untyped-def]
    return str(page.inner_text("#order-status")).strip()


def test_order_refused_in_words_then_served_by_the_crew(service: Service, tmp_path: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    base = f"http://127.0.0.1:{service.passenger_port}"
    admin = f"http://127.0.0.1:{service.admin_port}"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = launch_chromium(p)
        try:
            ctx = browser.new_context(locale="en-GB", viewport={"width": 390, "height": 800})
            page = ctx.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(base + "/portal/#menu")
            page.wait_for_function("window.portalReady === true", timeout=15000)
            page.wait_for_selector("#view-menu[data-shop=ready]", timeout=10000)
            # loaded lazily, under its content-hashed name (shop.<hash>.js)
            assert page.evaluate("window.ASSET_URLS['shop.js'] !== undefined && "
                                 "!!document.querySelector(`script[src=\"${window.ASSET_URLS['shop.js']}\"]`)")
            coffee = page.locator("#menu-items .menu-row[data-sku=COFFEE]")
            assert "€3.00" in coffee.inner_text() and "left" not in coffee.inner_text()  # not counted
            expect(page.locator("#shop-pay")).to_have_text(EN["shop.pay_on_delivery"])

            # The hangar builds, signs and pushes a new menu: it replaces the packaged one.
            (tmp_path / "menu.toml").write_text(NEW_MENU)
            bundle = str(tmp_path / "menu-2026-12.bundle")
            _hangar("build", "--kind", "menu", "--name", "menu-2026-12", "--version", "1",
                    str(tmp_path / "menu.toml"), "-o", bundle, cwd=tmp_path)
            _hangar("sign", bundle, "--key", str(tmp_path / "menu.key"), cwd=tmp_path)
            _hangar("push", bundle, "--url", admin, "--token", TOKEN, cwd=tmp_path)
            menu = service.passenger("/api/v1/menu")
            assert [(i["sku"], i["price"]) for i in menu["items"]] == [("COFFEE", 340), ("TEA", 280)]
            assert menu["version"] == 1

            # The page still shows the old menu: a croissant is no longer on the new one.
            page.fill("#menu-items [data-sku=CROISSANT] input", "1")
            page.fill("#seat", "12A")
            page.click("#order")
            want = EN["shop.err.not_on_menu"].replace("{item}", "Butter croissant")
            expect(page.locator("#order-status")).to_have_text(want)
            page.fill("#menu-items [data-sku=CROISSANT] input", "0")
            page.fill("#menu-items [data-sku=COFFEE] input", "1")
            page.fill("#seat", "")
            page.click("#order")
            expect(page.locator("#order-status")).to_have_text(EN["shop.err.seat"])
            assert "object" not in _status(page).lower()

            # Reopened, the menu is the new one; a valid order has a number and a total.
            page.evaluate("location.hash = '#catalog'")
            page.evaluate("location.hash = '#menu'")
            expect(coffee).to_contain_text("€3.40")
            expect(page.locator("#menu-items .menu-row[data-sku=CROISSANT]")).to_have_count(0)
            page.fill("#menu-items [data-sku=COFFEE] input", "2")
            expect(page.locator("#shop-total")).to_contain_text("€6.80")
            page.fill("#seat", "12a")
            page.click("#order")
            expect(page.locator("#order-status")).to_contain_text("Order 1 placed")
            assert "€6.80" in _status(page)
            expect(coffee).to_contain_text("3 left")
            mine = page.locator("#shop-orders li[data-order='1']")
            expect(mine).to_have_attribute("data-status", "placed")
            page.screenshot(path=str(ARTIFACTS / "placed.png"), full_page=True)

            # The crew: the admin port's login, orders by seat, buttons, stock.
            crew = ctx.new_page()
            crew.goto(admin + "/crew")
            crew.fill("#user", "purser")
            crew.fill("#password", "purser-pass")
            crew.click("#login-btn")
            row = crew.locator(".seat[data-seat='12A'] .order[data-order='1']")
            expect(row).to_contain_text("2 × Coffee")
            expect(crew.locator("#stock tr[data-sku=COFFEE] td[data-stock]")).to_have_text("3")
            expect(crew.locator("#who")).to_contain_text("purser (crew)")
            row.locator("button[data-to=preparing]").click()
            expect(row.locator(".status")).to_have_text("preparing")
            expect(mine).to_have_attribute("data-status", "preparing", timeout=15000)
            expect(mine).to_contain_text(EN["shop.status.preparing"])
            row.locator("button[data-to=delivered]").click()
            expect(row.locator(".status")).to_have_text("delivered")
            expect(mine).to_have_attribute("data-status", "delivered", timeout=15000)
            expect(mine).to_contain_text(EN["shop.status.delivered"])
            crew.screenshot(path=str(ARTIFACTS / "crew.png"), full_page=True)
            page.screenshot(path=str(ARTIFACTS / "delivered.png"), full_page=True)
            if AXE.exists():  # WCAG 2.1 AA on both pages as they are now (axe-core from npm)
                for name, pg in (("crew", crew), ("passenger", page)):
                    pg.add_script_tag(path=str(AXE))
                    found = pg.evaluate("(r) => axe.run(document, {runOnly: {type: 'tag', "
                                        "values: r}})", RULES)["violations"]
                    assert found == [], f"{name}: {_describe(found)}"
            assert errors == []
        finally:
            browser.close()
    rows = service.admin("/admin/v1/journal?kind=order")["rows"]
    assert [(r["data"]["order"], r["data"]["status"], r["data"]["by"]) for r in rows] == \
        [(1, "preparing", "purser"), (1, "delivered", "purser")]

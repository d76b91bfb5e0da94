"""The dashboard at tablet width (820 px): inventory, bundles and updates, no table cut off.

Debian chromium driven by Playwright (issue 14, "The operators' tools").

The real service runs with a content key pinned; a book is installed with ``appliance content
install`` before it starts, and a content bundle of two more books is pushed through the hangar
intake (the real push client) once it runs, so the inventory, the installed bundles and the
uploads all have rows; the card simulator plays the recorded flight so the live signals table is
full. Through the page only: the inventory lists the same titles as BITE counts, the updates panel
shows the running version, the slot line, the installed bundle and the upload's state, and every
table fits its panel and the viewport. Screenshots go to var/artifacts/dashboard-tablet/.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from appliance.intake.hangar import push
from appliance.web.admin.auth import hash_password
from tests.intake.helpers import KEYS, make_book, make_bundle, pub_hex

from .service import TOKEN, Service
from .test_dashboard import browser  # noqa: F401 - the fixture (system chromium, headless)

if TYPE_CHECKING:
    from playwright.sync_api import Browser

pytestmark = [pytest.mark.e2e, pytest.mark.system]

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "var" / "artifacts" / "dashboard-tablet"
TABLET = {"width": 820, "height": 1180}  # iPad Air, portrait

sync_api = pytest.importorskip("playwright.sync_api",
                               reason="PyPI playwright is not installed (pip install playwright)")
expect = sync_api.expect

#: For every table on the page: its id, whether it is displayed, its box, its wrapper's inner width
#: and the viewport's width (px).
TABLES_JS = """() => [...document.querySelectorAll("table")].map((t) => {
  const r = t.getBoundingClientRect(), wrap = t.parentElement;
  return {id: t.id, shown: r.width > 0 && r.height > 0, left: r.left, right: r.right,
          width: t.scrollWidth, wrapper: wrap.clientWidth, viewport: document.documentElement.clientWidth};
})"""


@pytest.fixture
def service(tmp_path: Path) -> Iterator[Service]:
    users = f'{{name = "mx", role = "maintenance", password_hash = "{hash_password("mx-pass-42")}"}}'
    keys = ", ".join(f'"{pub_hex(k)}"' for k in KEYS[:3])
    svc = Service(tmp_path, card_speed=100.0, extra_config=(
        f"admin_users = [{users}]\n[intake.roles.content]\nkeys = [{keys}]\nthreshold = 2\n"))
    cfg = svc.write_config()
    book = make_book(tmp_path / "pkg", "flight-manual", "A very long title " * 3)
    r = subprocess.run([sys.executable, "-m", "appliance.cli", "content", "install", str(book),
                        "--config", str(cfg)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    svc.start(timeout=60)
    try:
        yield svc
    finally:
        svc.stop()


def test_inventory_and_updates_panels_at_tablet_width(service: Service, browser: Browser,  # noqa: F811
                                                      flight_path: Path, tmp_path: Path) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for old in ARTIFACTS.glob("*.png"):
        old.unlink()
    bundle = make_bundle(tmp_path / "hangar", 1, {"safety-card": "Brace.", "menu-guide": "Tea."},
                         KEYS[:2])
    res = push(bundle, f"http://127.0.0.1:{service.admin_port}", TOKEN, give_up_s=60)
    assert res.status["state"] == "active"
    card = subprocess.Popen(
        [sys.executable, "-m", "firmware_bridge.cli", "play", str(flight_path), "--link",
         str(service.card_link), "--speed", "100", "--start", "06:46:00", "--end", "07:08:00"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    page = browser.new_page(viewport=TABLET)
    page.set_default_timeout(15_000)
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    try:
        page.goto(f"http://127.0.0.1:{service.admin_port}/")
        page.fill("#user", "mx")
        page.fill("#password", "mx-pass-42")
        page.click("#login-btn")
        expect(page.locator("#app")).to_be_visible()
        expect(page.locator("#sig-pressure_altitude")).to_be_visible(timeout=30_000)

        # Content inventory: the titles BITE counts, each with kind, version, size.
        rows = page.locator("#content tbody tr")
        expect(rows).to_have_count(3)
        titles = sorted(rows.evaluate_all("rs => rs.map(r => r.dataset.title)"))
        assert titles == ["flight-manual", "menu-guide", "safety-card"]
        bite = page.locator('#health tr[data-subsystem="content"]')
        expect(bite).to_contain_text("3 titles")
        expect(page.locator("#content-n")).to_have_text("3 titles")
        expect(page.locator('#content tr[data-title="flight-manual"]')).to_contain_text("book")
        page.locator("#side-panel").screenshot(path=ARTIFACTS / "01-content-inventory.png")

        # Bundles and updates: running version, slot, the installed bundle, the upload's state.
        status: dict[str, Any] = service.admin("/admin/v1/status")
        expect(page.locator("#sw-version")).to_have_text(status["version"])
        expect(page.locator("#sw-slot")).not_to_have_text("—")
        expect(page.locator("#sw-last")).to_have_text("none through the hangar intake")
        expect(page.locator('#installed-bundles tr[data-kind="content"]')).to_contain_text(
            "content-v1 v1")
        upload = page.locator(f'#uploads tr[data-upload="{res.status["id"]}"]')
        expect(upload).to_contain_text("active")
        expect(upload).to_contain_text("100%")
        expect(page.locator("#intake-open")).to_contain_text("intake open")
        page.locator("#updates-panel").screenshot(path=ARTIFACTS / "02-bundles-and-updates.png")

        # No table is cut off: each fits its panel and the viewport; the page does not scroll
        # sideways.
        page.evaluate("slow()")
        expect(page.locator('#outbox tr[data-stream="intake"]')).to_be_visible()
        tables = page.evaluate(TABLES_JS)
        shown = {t["id"] for t in tables if t["shown"]}
        assert {"signals", "outbox", "content", "uploads", "installed-bundles", "journal",
                "sources", "health"} <= shown, shown
        bad = [t for t in tables if t["shown"] and (t["right"] > t["viewport"] + 0.5 or t["left"] < 0
                                                    or t["width"] > t["wrapper"] + 1)]
        assert not bad, f"tables cut off at 820 px: {bad}"
        assert page.evaluate("document.documentElement.scrollWidth") <= TABLET["width"]
        page.locator("#signals-panel").screenshot(path=ARTIFACTS / "03-signals.png")
        page.screenshot(path=ARTIFACTS / "04-dashboard-820px.png", full_page=True)
        assert not errors, errors
    except Exception:
        page.screenshot(path=ARTIFACTS / "failure.png", full_page=True)
        raise
    finally:
        if card.poll() is None:
            card.kill()
        card.wait()

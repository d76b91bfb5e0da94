"""The maintenance dashboard in a real browser (Debian chromium driven by Playwright) during a replay.

The real service runs with a crew and a maintenance user; the card simulator plays the recorded
AFR34ZG flight from 06:46 to 07:08 UTC at x100 (take-off at 06:59:17), so the ground part lasts
about 8 s of wall time and the airborne part about 5 s. Through the page only: log in, watch
health and live signals change, enter and leave MAINTENANCE on the ground, see it refused in
flight, check the flight profile plot, export the logs, and check the crew user cannot act.
Screenshots go to var/artifacts/dashboard/. Needs Debian ``chromium`` and PyPI ``playwright``
(no ``playwright install``: the system chromium is used and nothing is downloaded).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from appliance.web.admin.auth import hash_password

from .service import Service

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "var" / "artifacts" / "dashboard"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
SPEED = 100.0
START, END = "06:46:00", "07:08:00"
USERS = {"mx": ("maintenance", "mx-pass-42"), "fa": ("crew", "crew-pass-42")}

sync_api = pytest.importorskip("playwright.sync_api",
                               reason="PyPI playwright is not installed (pip install playwright)")
expect = sync_api.expect


@pytest.fixture
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists() and shutil.which("chromium") is None:
        pytest.skip("Debian chromium is not installed (apt-get install chromium)")
    with sync_api.sync_playwright() as pw:
        try:
            b = pw.chromium.launch(executable_path=shutil.which("chromium") or CHROMIUM,
                                   args=CHROMIUM_ARGS, timeout=20_000)
        except sync_api.Error as e:
            pytest.skip(f"chromium cannot be launched here: {e}")
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def service(tmp_path: Path) -> Iterator[Service]:
    users = ", ".join(f'{{name = "{n}", role = "{r}", password_hash = "{hash_password(p)}"}}'
                      for n, (r, p) in USERS.items())
    svc = Service(tmp_path, extra_config=f"admin_users = [{users}]\n", card_speed=SPEED)
    svc.start()
    try:
        yield svc
    finally:
        code = svc.stop()
        assert code == 0, f"service did not stop cleanly ({code}):\n{svc.log()}"


def _login(page: Page, user: str) -> None:
    page.fill("#user", user)
    page.fill("#password", USERS[user][1])
    page.click("#login-btn")
    expect(page.locator("#app")).to_be_visible()
    expect(page.locator("#who")).to_contain_text(f"{user} ({USERS[user][0]})")


def _maintenance(page: Page, on: bool, reason: str) -> None:
    page.fill("#mx-reason", reason)
    page.click("#mx-on" if on else "#mx-off")


def test_dashboard_during_replay(service: Service, browser: Browser, flight_path: Path) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for old in [*ARTIFACTS.glob("*.png"), *ARTIFACTS.glob("*.tar.zst")]:
        old.unlink()
    base = f"http://127.0.0.1:{service.admin_port}"
    page = browser.new_page(viewport={"width": 1280, "height": 800}, accept_downloads=True)
    page.set_default_timeout(10_000)
    errors: list[str] = []
    foreign: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("request", lambda r: None if r.url.startswith((base, "data:", "blob:"))
            else foreign.append(r.url))
    card: subprocess.Popen[bytes] | None = None
    try:
        page.goto(base + "/")
        expect(page.locator("#login-view")).to_be_visible()
        page.screenshot(path=ARTIFACTS / "01-login.png")
        _login(page, "mx")
        assert page.evaluate("sessionStorage.getItem('role')") == "maintenance"
        bus = page.locator('#health tr[data-subsystem="bus:card"]')
        expect(bus).to_contain_text("not connected")  # no card yet: red
        health_before = bus.inner_text()
        page.screenshot(path=ARTIFACTS / "02-before-replay.png")

        card = subprocess.Popen(
            [sys.executable, "-m", "firmware_bridge.cli", "play", str(flight_path), "--link",
             str(service.card_link), "--speed", str(SPEED), "--start", START, "--end", END],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

        # On the ground (taxi out): enter MAINTENANCE with a reason, then leave it.
        expect(page.locator("#ag-state")).to_have_text("ground", timeout=20_000)
        utc_time = page.locator("#sig-utc_time .v")
        first_utc_time = utc_time.inner_text()
        _maintenance(page, True, "cabin server check at the gate")
        expect(page.locator("#mx-msg")).to_contain_text("Mode now MAINTENANCE")
        expect(page.locator("#mode-value")).to_have_text("MAINTENANCE")
        page.screenshot(path=ARTIFACTS / "03-maintenance-on-ground.png")
        _maintenance(page, False, "check done")
        expect(page.locator("#mx-msg")).to_contain_text("Mode now GROUND")
        expect(page.locator("#mode-value")).to_have_text("GROUND")

        # Health and live signals moved with the replay.
        expect(bus).not_to_have_text(health_before)
        expect(bus).to_contain_text("words/s")
        expect(utc_time).not_to_have_text(first_utc_time)
        expect(page.locator('#sources tr[data-counter="frames"] td').nth(1)).not_to_have_text("0")

        # Airborne: altitude moves, and MAINTENANCE is refused with the reason.
        expect(page.locator("#ag-state")).to_have_text("air", timeout=30_000)
        expect(page.locator("#mode-value")).to_have_text("FLIGHT")
        altitude = page.locator("#sig-pressure_altitude .v")
        first_altitude = altitude.inner_text()
        expect(altitude).not_to_have_text(first_altitude, timeout=5_000)
        _maintenance(page, True, "try in flight")
        expect(page.locator("#mx-msg")).to_contain_text(
            "Refused: maintenance mode is allowed on the ground only (air/ground air, mode FLIGHT)")
        expect(page.locator("#mode-value")).to_have_text("FLIGHT")
        page.screenshot(path=ARTIFACTS / "04-refused-in-flight.png")

        # The flight profile once the replay is over: series drawn, bands, the take-off marked with
        # its evidence (slow() is the page's 5 s refresh of profile and outbox; run it now).
        _, err = card.communicate(timeout=60)
        assert card.returncode == 0, err.decode()
        page.evaluate("slow()")
        plot = page.locator("#plot")
        takeoff = plot.locator('g.transition[data-change="GROUND>FLIGHT"]')
        expect(takeoff).to_have_count(1, timeout=10_000)
        assert plot.locator("path.series").count() == 3
        assert plot.locator("path.wow").count() == 2
        for d in plot.locator("path.series").evaluate_all("ps => ps.map(p => p.getAttribute('d'))"):
            assert d.count("L") > 20, d[:200]
        modes = {t.split()[1].rstrip(":") for t in
                 plot.locator("rect.band-mode title").all_text_contents()}
        assert {"GROUND", "FLIGHT"} <= modes, modes
        assert plot.locator("rect.band-phase").count() >= 3
        tooltip = takeoff.locator("title").text_content() or ""
        assert "GROUND → FLIGHT" in tooltip and "votes: wow_left=air" in tooltip, tooltip
        takeoff.locator("line").last.hover(force=True)
        expect(page.locator("#tip")).to_contain_text("persisted_s=")
        page.locator("#profile-panel").screenshot(path=ARTIFACTS / "05-flight-profile.png")
        expect(page.locator("#transitions")).to_contain_text("GROUND → FLIGHT")

        # Journal browser (kind filter), outbox, content inventory, log export.
        page.select_option("#j-kind", "mode")
        expect(page.locator("#journal")).to_contain_text("mode GROUND -> FLIGHT")
        expect(page.locator("#journal")).not_to_contain_text("phase taxi_out")
        expect(page.locator('#outbox tr[data-stream="audit"]')).to_be_visible()
        expect(page.locator("#content-msg")).to_contain_text("No titles installed")
        with page.expect_download() as dl:
            page.click("#export")
        bundle = ARTIFACTS / dl.value.suggested_filename
        dl.value.save_as(bundle)
        assert bundle.name.endswith(".tar.zst") and bundle.stat().st_size > 0
        expect(page.locator("#export-msg")).to_contain_text(".tar.zst")
        page.screenshot(path=ARTIFACTS / "06-dashboard-full.png", full_page=True)

        # A crew user reads but cannot act.
        page.click("#logout")
        expect(page.locator("#login-view")).to_be_visible()
        _login(page, "fa")
        for control in ("#mx-reason", "#mx-on", "#mx-off", "#export"):
            expect(page.locator(control)).to_be_disabled()
        expect(page.locator("#mx-msg")).to_have_text("")
        expect(page.locator("#mode-value")).to_have_text("FLIGHT")
        page.screenshot(path=ARTIFACTS / "07-crew-read-only.png")

        assert not errors, errors
        assert not foreign, f"the page requested something off the appliance: {foreign}"
    except Exception:
        page.screenshot(path=ARTIFACTS / "failure.png", full_page=True)
        raise
    finally:
        if card is not None and card.poll() is None:
            card.kill()
            card.wait()

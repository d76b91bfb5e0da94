"""The moving map in Debian's Chromium (Playwright), opened late during a replay of AFR34ZG.

The real service runs on the card simulator's bytes (x100 from a minute before take-off). The page
opens some 20 minutes into the flight (card time), yet the map draws the whole track from the
take-off: its points are the ``flight_track`` records the service queued for the ground (the outbox,
read from the journal), then the points after them. The facts give a time to destination and the
arrival in Toulouse's local time; every passenger view, walked through climb, cruise, descent and
the gate, shows no raw state or phase name and no untranslated key. An invalid position holds the
marker where it was. Screenshots go to ``var/artifacts/map/``.
"""

from __future__ import annotations

import json
import re
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from appliance.modes.phase import Phase
from appliance.modes.policy import Mode

from .service import CHROMIUM, Service, launch_chromium, start_card

# A flight at x100 with a browser on it (~60 s): a whole-system test (make test-system).
pytestmark = [pytest.mark.e2e, pytest.mark.system]

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "var" / "artifacts" / "map"
VENDOR = REPO / "var" / "vendor"
I18N = REPO / "appliance" / "web" / "passenger" / "assets" / "i18n"
SPEED = 100.0
VIEWS = ("catalog", "flight", "menu", "feedback")
#: A raw identifier: a phase or mode as the service names it, or an i18n key left untranslated.
RAW = re.compile(r"\b(?:" + "|".join([*(p.value for p in Phase), *(m.value for m in Mode)])
                 + r")\b|\b(?:" + "|".join(sorted({k.split(".")[0] for k in json.loads(
                     (I18N / "en.json").read_text()) if "." in k})) + r")\.[a-z_]+\b")


def _outbox_points(db: Path) -> list[tuple[str, list[list[float]]]]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        rows = conn.execute("SELECT payload FROM outbox WHERE stream = 'flight_track' ORDER BY id"
                            ).fetchall()
    finally:
        conn.close()
    out = []
    for (p,) in rows:
        rec = json.loads(p)
        out.append((rec["flight_id"], [[x[1], x[2]] for x in rec["points"]]))
    return out


def _close(a: list[list[float]], b: list[list[float]]) -> bool:
    """Same points (the records hold 5 decimals, the map's route 4)."""
    return len(a) == len(b) and all(abs(p[0] - q[0]) <= 1.1e-4 and abs(p[1] - q[1]) <= 1.1e-4
                                    for p, q in zip(a, b, strict=True))


def _wait(pred: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def service(tmp_path: Path) -> Iterator[Service]:
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian chromium not installed")
    pytest.importorskip("playwright")
    if not (VENDOR / "places.json").exists():
        pytest.skip("no places file: run `make content`")
    svc = Service(tmp_path, card_speed=SPEED)
    svc.extra_config = f"""
[content]
vendor_dir = "{VENDOR}"
origin = "LFPG"
destination = "LFBO"
flight_push_s = 0.5
"""
    svc.start()
    yield svc
    code = svc.stop()
    assert code == 0, f"service did not stop cleanly ({code}):\n{svc.log()}"


def _raw_in_views(page: Any) -> list[tuple[str, str]]:
    found = []
    for view in VIEWS:
        page.evaluate(f"location.hash = '#{view}'")
        page.wait_for_function(f"!document.getElementById('view-{view}').hidden")
        text = page.evaluate("document.body.innerText")
        attrs = page.evaluate("""Array.from(document.querySelectorAll('[aria-label],[title]'))
            .map((e) => (e.getAttribute('aria-label') || '') + ' ' + (e.getAttribute('title') || ''))
            .join(' ')""")
        found += [(view, m.group(0)) for m in RAW.finditer(text + " " + attrs)]
    return found


def test_map_opened_late_draws_the_whole_track(service: Service, flight_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    svc = service
    base = f"http://127.0.0.1:{svc.passenger_port}"
    db = svc.workdir / "data" / "journal.db"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    raw: list[tuple[str, str]] = []
    seen: set[str] = set()
    card = None
    try:
        with sync_playwright() as p:
            browser = launch_chromium(p)
            try:
                errors: list[str] = []
                # a passenger who came aboard early walks every view from the gate on
                early = browser.new_page(viewport={"width": 420, "height": 860})
                early.on("pageerror", lambda e: errors.append(str(e)))
                early.goto(base + "/portal/")
                early.wait_for_function("window.portalReady === true", timeout=15000)

                def walk() -> None:
                    nonlocal raw
                    raw += _raw_in_views(early)
                    seen.add(svc.passenger("/api/v1/flight")["phase"])

                walk()
                card = start_card(flight_path, svc.card_link, SPEED, extra=["--start", "06:58:17"])
                # some 20 minutes of flight (two records queued) before the late page opens
                while len(_outbox_points(db)) < 2 or "cruise" not in seen:
                    walk()
                    assert card.poll() is None, "the recording ended before cruise"
                page = browser.new_page(viewport={"width": 420, "height": 860})
                page.on("pageerror", lambda e: errors.append(str(e)))
                page.goto(base + "/portal/#flight")
                page.wait_for_function("window.portalReady === true", timeout=15000)
                page.wait_for_function("window.FlightMap && document.getElementById('map')"
                                       ".dataset.points >= 40", timeout=15000)
                records = _outbox_points(db)  # then the page, which has at least as much
                summary = [pt for _, pts in records for pt in pts]
                page.wait_for_function(f"Number(document.getElementById('map').dataset.points)"
                                       f" >= {len(summary)}", timeout=10000)
                drawn = page.evaluate("window.FlightMap.state.track")
                tid = page.evaluate("document.getElementById('map').dataset.trackId")
                assert {f for f, _ in records} == {tid}, (tid, records[:1])
                # the whole track from take-off: the records' points, in order, then the rest
                assert len(drawn) >= len(summary) >= 40
                assert _close(drawn[:len(summary)], summary)
                api = svc.passenger("/api/v1/flight/track")
                assert api["id"] == tid and api["n"] >= len(drawn)
                assert _close([q[:2] for q in api["points"][:len(drawn)]], drawn)
                page.screenshot(path=str(ARTIFACTS / "01-map-late.png"), full_page=True)
                # time to destination and the local arrival time at Toulouse
                togo = page.inner_text("#fi-togo")
                assert re.search(r"\d+ (h \d+ )?min", togo), togo
                eta = page.inner_text("#fi-eta")  # lands 07:58 UTC: 09:58 CEST
                assert re.fullmatch(r"09:[0-5]\d( AM)? in Toulouse Blagnac", eta), eta
                assert int(page.evaluate("document.getElementById('map').dataset.places")) >= 1
                # an invalid position: the marker holds the last good one
                before = page.evaluate("window.FlightMap.state.live")
                page.evaluate("window.FlightMap.update({...S.flight, latitude: null, "
                              "longitude: null})")
                assert page.evaluate("window.FlightMap.state.live") == before
                assert page.evaluate("document.getElementById('map').dataset.held") == "1"
                # every passenger view, through the rest of the flight and at the gate
                while svc.passenger("/api/v1/flight")["mode"] != "GROUND":
                    walk()
                    if card.poll() is not None:
                        break
                _wait(lambda: svc.passenger("/api/v1/flight")["phase"] in ("taxi_in", "parked"),
                      60, "taxi in")
                raw += _raw_in_views(page)
                page.evaluate("location.hash = '#flight'")
                page.wait_for_function("document.getElementById('fi-phase').textContent"
                                       ".startsWith('Taxiing to the gate') || document"
                                       ".getElementById('fi-phase').textContent === 'At the gate'",
                                       timeout=10000)
                # landed: the finished flight's whole track is still drawn
                landed = svc.passenger("/api/v1/flight/track")
                assert landed["id"] == tid
                page.wait_for_function(f"Number(document.getElementById('map').dataset.points)"
                                       f" === {landed['n']}", timeout=10000)
                page.screenshot(path=str(ARTIFACTS / "02-map-landed.png"), full_page=True)
                page.evaluate("location.hash = '#catalog'")
                page.select_option("#lang", "fr")
                page.wait_for_function("document.documentElement.lang === 'fr'")
                raw += _raw_in_views(page)
                assert not errors, errors
            finally:
                browser.close()
    finally:
        if card is not None and card.poll() is None:
            card.kill()
            card.wait()
    assert not raw, sorted(set(raw))
    assert {"parked", "climb", "cruise", "descent"} <= seen, seen
    assert "Traceback" not in svc.log(), svc.log()

"""The passenger portal in Debian's Chromium (Playwright) on the real service during a replay.

The card is played from a thread of this test (the same simulator bytes as ``card-sim``), so the
test can raise the PA-active discrete when it wants. Steps: the captive probe opens the portal; the
catalog shows the film, the book and a flight-only title locked on the ground; after take-off the
flight-only title opens; the film plays past 2 s, seeks to the middle and resumes; PA active pauses
it and PA ended resumes it; the book opens; the flight info updates; after landing the flight-only
title is locked again; a maintenance override closes passenger services with a message.
Screenshots go to ``var/artifacts/portal/``.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import struct
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from firmware_bridge.frame import DiscreteBits, FrameDecoder, FrameType, encode_discretes, encode_frame
from firmware_bridge.player import PtyPort
from firmware_bridge.recording import load
from firmware_bridge.simulator import generate

from .service import CHROMIUM, TOKEN, Service, free_port, launch_chromium

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "var" / "artifacts" / "portal"
FILM = REPO / "var" / "content" / "big-buck-bunny"
BOOK = REPO / "var" / "content" / "genesis-kjv"
VENDOR = REPO / "var" / "vendor"
TAKEOFF = dt.datetime(2024, 7, 6, 6, 59, 17, tzinfo=dt.UTC).timestamp()
LANDING = dt.datetime(2024, 7, 6, 7, 58, 43, tzinfo=dt.UTC).timestamp()
SPEED = 80.0


class PaCard(threading.Thread):
    """The card simulator's bytes onto a pty, paced; ``pa`` set = the PA-active discrete asserted."""

    def __init__(self, recording: Path, link: Path, speed: float, start: float, end: float) -> None:
        super().__init__(daemon=True)
        self.traj = load(recording)
        self.link, self.speed, self.start_t, self.end_t = link, speed, start, end
        self.pa = threading.Event()
        self.halt = threading.Event()
        self.error: BaseException | None = None

    @staticmethod
    def with_pa(chunk: bytes) -> bytes:
        out = []
        for f in FrameDecoder().feed(chunk):
            if f.type == FrameType.DISCRETES:
                states, mask = struct.unpack("<HH", f.payload)
                out.append(encode_discretes(f.t_us, states | DiscreteBits.PA_ACTIVE, mask))
            else:
                out.append(encode_frame(f.type, f.channel, f.t_us, f.payload))
        return b"".join(out)

    def run(self) -> None:
        port = PtyPort(self.link)
        try:
            wall0 = time.monotonic()
            for t, chunk in generate(self.traj, start=self.start_t, end=self.end_t):
                if self.halt.is_set():
                    break
                port.write(self.with_pa(chunk) if self.pa.is_set() else chunk)
                delay = wall0 + (t - self.start_t) / self.speed - time.monotonic()
                if delay > 0.004:
                    time.sleep(delay)
            self.halt.wait(2.0)
        except BaseException as e:  # noqa: BLE001 - handed to the test
            self.error = e
        finally:
            port.close()


def _packages(tmp: Path) -> tuple[Path, Path]:
    if FILM.exists() and BOOK.exists():
        return FILM, BOOK
    src = REPO / "var" / "cache" / "content"
    if not (src / "bigbuckbunny.mp4").exists() or not (src / "genesis.txt").exists():
        pytest.skip("content not fetched: run `make content` (Big Buck Bunny and the KJV Genesis)")
    film, book = tmp / "film", tmp / "book"
    for args in (["package", str(src / "bigbuckbunny.mp4"), "--out", str(film), "--id",
                  "big-buck-bunny", "--title", "Big Buck Bunny", "--licence", "CC-BY-3.0"],
                 ["package", str(src / "genesis.txt"), "--out", str(book), "--id", "genesis-kjv",
                  "--title", "Genesis", "--licence", "Public domain"]):
        subprocess.run([sys.executable, "-m", "media", *args], check=True)
    return film, book


def _flight_only(book: Path, dst: Path) -> Path:
    shutil.copytree(book, dst)
    man = json.loads((dst / "package.json").read_text())
    man |= {"id": "flight-reading", "title": "In-flight reading", "flight_only": True}
    (dst / "package.json").write_text(json.dumps(man))
    return dst


def _admin_post(svc: Service, path: str, body: dict[str, Any]) -> int:
    req = urllib.request.Request(f"http://127.0.0.1:{svc.admin_port}{path}",
                                 data=json.dumps(body).encode(), method="POST",
                                 headers={"Authorization": f"Bearer {TOKEN}",
                                          "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return int(r.status)
    except urllib.error.HTTPError as e:
        return int(e.code)


def _wait(pred: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def service(tmp_path: Path) -> Iterator[Service]:
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian chromium not installed")
    pytest.importorskip("playwright")
    film, book = _packages(tmp_path)
    svc = Service(tmp_path, card_speed=SPEED)
    media_port = free_port()
    svc.extra_config = f"""
[content]
media_port = {media_port}
vendor_dir = "{VENDOR}"
origin = "LFPG"
destination = "LFBO"
flight_push_s = 0.5
"""
    cfg = svc.write_config()
    for pkg in (film, book, _flight_only(book, tmp_path / "flight-only")):
        subprocess.run([sys.executable, "-m", "appliance.cli", "content", "install", "--config",
                        str(cfg), str(pkg)], check=True, cwd=tmp_path)
    svc.start()
    yield svc
    code = svc.stop()
    assert code == 0, f"service did not stop cleanly ({code}):\n{svc.log()}"


def test_portal_in_chromium_during_a_replay(service: Service, flight_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    svc = service
    base = f"http://127.0.0.1:{svc.passenger_port}"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    card = PaCard(flight_path, svc.card_link, SPEED, TAKEOFF - 40, LANDING + 60)
    with sync_playwright() as p:
        browser = launch_chromium(p, autoplay=True)
        try:
            page = browser.new_page(viewport={"width": 1000, "height": 760})
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            # the phone's captive probe lands on the portal
            page.goto(base + "/hotspot-detect.html")
            assert page.url.endswith("/portal/")
            page.wait_for_function("window.portalReady === true", timeout=15000)
            assert page.is_visible("#welcome")
            page.screenshot(path=str(ARTIFACTS / "01-portal.png"), full_page=True)
            locked = page.locator("button.card[data-id=flight-reading]")
            assert "Available after take-off" in locked.inner_text()
            page.click("#start")
            page.wait_for_function("document.getElementById('welcome').hidden")
            assert urllib.request.urlopen(base + "/generate_204").status == 204
            # take-off: the flight-only title opens (the mode event reloads the catalog)
            card.start()
            _wait(lambda: svc.passenger("/api/v1/flight")["mode"] == "FLIGHT", 60, "take-off")
            page.wait_for_function("!document.querySelector('button.card[data-id=flight-reading]')"
                                   ".classList.contains('locked')", timeout=10000)
            # the film plays, seeks to the middle and resumes
            page.click("button.card[data-id=big-buck-bunny]")
            page.wait_for_function("document.getElementById('player').currentTime > 2",
                                   timeout=30000)
            page.screenshot(path=str(ARTIFACTS / "02-player.png"))
            mid = page.evaluate("""() => { const v = document.getElementById('player');
                v.loop = true; const m = v.duration / 2; v.currentTime = m; return m; }""")
            page.wait_for_function(f"(() => {{ const v = document.getElementById('player');"
                                   f" return !v.paused && !v.seeking && v.currentTime > {mid} + 0.3 &&"
                                   f" v.currentTime < {mid} + 2.5; }})()", timeout=15000)
            # a PA announcement pauses the player; its end resumes it
            card.pa.set()
            page.wait_for_function("document.getElementById('player').paused", timeout=10000)
            assert page.is_visible("#pa-banner")
            page.screenshot(path=str(ARTIFACTS / "03-pa-paused.png"))
            card.pa.clear()
            page.wait_for_function("!document.getElementById('player').paused", timeout=10000)
            assert not page.is_visible("#pa-banner")
            # the book opens
            page.goto(base + "/portal/#read/genesis-kjv")
            page.frame_locator("#reader-frame").locator("h1").wait_for(timeout=10000)
            assert "Chapter 1" in page.frame_locator("#reader-frame").locator("h1").inner_text()
            page.screenshot(path=str(ARTIFACTS / "04-reader.png"))
            # the flight info follows the replay
            page.click("#nav-flight")
            page.wait_for_function("document.getElementById('fi-alt').textContent.includes('ft')",
                                   timeout=10000)
            first = (page.inner_text("#fi-alt"), page.inner_text("#fi-pos"))
            page.wait_for_function(f"document.getElementById('fi-pos').textContent !== {first[1]!r}",
                                   timeout=10000)
            assert page.inner_text("#fi-eta") != "–"
            page.screenshot(path=str(ARTIFACTS / "05-flight.png"), full_page=True)
            # landing: the flight-only title is locked again
            _wait(lambda: svc.passenger("/api/v1/flight")["mode"] == "GROUND", 90, "landing")
            page.goto(base + "/portal/")
            page.wait_for_function("window.portalReady === true", timeout=15000)
            assert "Available after take-off" in page.locator(
                "button.card[data-id=flight-reading]").inner_text()
            # maintenance closes passenger services with a message
            assert _admin_post(svc, "/admin/v1/maintenance",
                               {"on": True, "reason": "e2e: cabin check"}) == 200
            page.reload()
            page.wait_for_function("!document.getElementById('closed-message').hidden",
                                   timeout=15000)
            assert "closed" in page.inner_text("#closed-message")
            page.screenshot(path=str(ARTIFACTS / "06-closed.png"))
            # one message per service in the mode's words, in place of the view: never the
            # "free on this Wi-Fi" welcome with it, no empty Films/Books headings (issue 16)
            messages = set()
            for view in ("catalog", "flight", "menu", "feedback"):
                page.evaluate(f"location.hash = '#{view}'")
                page.wait_for_function(f"!document.getElementById('view-{view}').hidden")
                shown = page.evaluate("""() => ({
                  banner: document.getElementById('closed-message').innerText,
                  welcome: !document.getElementById('welcome').hidden,
                  text: document.body.innerText,
                  headings: Array.from(document.querySelectorAll('main h2'))
                              .filter((h) => h.offsetParent !== null).length})""")
                assert "closed during maintenance" in shown["banner"], shown
                assert not shown["welcome"] and "free on this Wi-Fi" not in shown["text"], shown
                assert shown["headings"] == 0, shown
                messages.add(shown["banner"])
            assert len(messages) == 4, messages
            assert not errors, errors
        finally:
            card.halt.set()
            browser.close()
    card.join(10)
    assert card.error is None, card.error
    assert "Traceback" not in svc.log(), svc.log()

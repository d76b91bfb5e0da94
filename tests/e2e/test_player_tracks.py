"""The player's subtitle, caption and audio menus, caption style and "continue watching" (issue 19).

Debian's Chromium plays the ``tracked_film`` package (real ffmpeg output with three audio
renditions and three subtitle renditions) from the real service through hls.js:

- the closed captions show (a cue with the sound description is active on screen), and the
  caption size the passenger picks changes the cue's size; screenshots before and after;
- the French soundtrack and then the audio description are selected: their segments are fetched
  and playback goes on;
- the choices are remembered: after a reload the same captions and audio are selected again;
- "continue watching": after a reload the player offers the saved position, and resumes within
  2 s of it.

Screenshots go to ``var/artifacts/player/``.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from ..conftest import TRACKED_FILM_ID
from .service import CHROMIUM, Service, launch_chromium

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "var" / "artifacts" / "player"
VENDOR = REPO / "var" / "vendor"


@pytest.fixture
def service(tmp_path: Path, tracked_film: Path) -> Iterator[Service]:
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian chromium not installed")
    pytest.importorskip("playwright")
    if not (VENDOR / "hls.min.js").exists():
        pytest.skip("no hls.js (make content)")
    svc = Service(tmp_path)
    svc.extra_config = f'[content]\nvendor_dir = "{VENDOR}"\n'
    cfg = svc.write_config()
    subprocess.run([sys.executable, "-m", "appliance.cli", "content", "install", "--config",
                    str(cfg), str(tracked_film)], check=True, cwd=tmp_path)
    svc.start()
    yield svc
    svc.stop()


def _select_by_text(page, sel: str, text: str) -> None:  # type: ignore[no-untyped-def]
    value = page.evaluate(f"""(t) => Array.from(document.querySelectorAll('{sel} option'))
        .find((o) => o.textContent === t)?.value""", text)
    assert value is not None, f"{sel}: no option {text!r}"
    page.select_option(sel, value)


CUE = """() => { const v = document.getElementById('player');
  for (const tt of v.textTracks) if (tt.mode === 'showing' && tt.activeCues && tt.activeCues.length)
    return tt.activeCues[0].text; return null; }"""


def test_captions_audio_and_continue_watching(service: Service) -> None:
    from playwright.sync_api import sync_playwright

    base = f"http://127.0.0.1:{service.passenger_port}"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = launch_chromium(p, autoplay=True)
        try:
            ctx = browser.new_context(viewport={"width": 1000, "height": 800})
            page = ctx.new_page()
            fetched: list[str] = []
            page.on("request", lambda r: fetched.append(r.url))
            page.goto(base + f"/portal/#play/{TRACKED_FILM_ID}")
            page.wait_for_function("window.portalReady === true", timeout=15000)
            page.wait_for_function("S.hls && S.hls.audioTracks.length === 3 && "
                                   "S.hls.subtitleTracks.length === 3", timeout=20000)
            options = page.evaluate("Array.from(document.querySelectorAll('#sub-select option'))"
                                    ".map((o) => o.textContent)")
            assert options == ["Off", "English", "Français", "English (CC)"]
            audio = page.evaluate("Array.from(document.querySelectorAll('#audio-select option'))"
                                  ".map((o) => o.textContent)")
            assert audio == ["English", "Français", "English (AD)"]

            # each subtitle track shows its own text; the closed captions their sound description
            page.evaluate("(() => { const v = document.getElementById('player'); v.pause();"
                          " v.currentTime = 1.5; })()")
            for name, text in (("English", "A big rabbit wakes up."),
                               ("Français", "Un gros lapin se réveille."),
                               ("English (CC)", "[birds singing] A big rabbit wakes up.")):
                _select_by_text(page, "#sub-select", name)
                page.wait_for_function(f"({CUE})() === {text!r}", timeout=15000)
                page.locator("#player").screenshot(
                    path=str(ARTIFACTS / f"subtitles-{name.replace(' ', '').lower()}.png"))
            page.wait_for_timeout(500)
            page.locator("#player").screenshot(path=str(ARTIFACTS / "captions-medium.png"))
            medium = page.evaluate("parseInt(getComputedStyle(document.getElementById('player'))"
                                   ".getPropertyValue('--cue-px'))")
            _select_by_text(page, "#cue-size", "Extra large")
            large = page.evaluate("parseInt(getComputedStyle(document.getElementById('player'))"
                                  ".getPropertyValue('--cue-px'))")
            assert large >= 1.8 * medium, (medium, large)
            page.wait_for_timeout(500)
            page.locator("#player").screenshot(path=str(ARTIFACTS / "captions-xlarge.png"))

            # the French soundtrack, then the audio description: fetched, and playback goes on
            for name, folder, index in (("Français", "/a-fr/", 1), ("English (AD)", "/ad-en/", 2)):
                fetched.clear()
                _select_by_text(page, "#audio-select", name)
                page.evaluate("(() => { const v = document.getElementById('player');"
                              " v.currentTime = 0.2; v.play(); })()")
                page.wait_for_function(f"S.hls.audioTrack === {index}", timeout=10000)
                page.wait_for_function("document.getElementById('player').currentTime > 1.2",
                                       timeout=20000)
                assert any(folder in u and u.endswith(".ts") for u in fetched), (name, fetched)

            # continue watching: pause at 3.2 s; after a reload the choices and the place are kept
            page.evaluate("(() => { const v = document.getElementById('player'); v.pause();"
                          " v.currentTime = 3.2; })()")
            page.wait_for_function("!document.getElementById('player').seeking")
            page.evaluate("document.getElementById('player').dispatchEvent(new Event('pause'))")
            page.reload()
            page.wait_for_function("window.portalReady === true", timeout=15000)
            page.wait_for_function("S.hls && S.hls.subtitleTracks.length === 3", timeout=20000)
            page.wait_for_function("S.hls.subtitleTrack === 2 && S.hls.audioTrack === 2",
                                   timeout=10000)
            assert not page.is_hidden("#resume")
            assert "0:03" in page.inner_text("#resume-go")
            page.click("#resume-go")
            page.wait_for_function("!document.getElementById('player').paused", timeout=10000)
            at = page.evaluate("document.getElementById('player').currentTime")
            assert abs(at - 3.2) < 2.0, at
            page.screenshot(path=str(ARTIFACTS / "resumed.png"))
        finally:
            browser.close()

"""Real publishers' EPUBs normalised, checked, installed and read in Chromium (issue 19).

Debian's ``live-manual-epub`` ships the Live Systems manual as EPUB 2 in ten languages; as
shipped, epubcheck reports a fatal error and thousands of errors for each. ``media package``
repairs, converts (pandoc) and checks (epubcheck) the English, French and Japanese ones: each must
pass epubcheck with 0 errors, install, and read in Chromium (epub.js) with its chapter list
reachable by keyboard, the current chapter marked, pages turned, text size changed and the place
kept across a reload. A file that is not an EPUB is refused at packaging with the reason.
Screenshots go to ``var/artifacts/reader/``. Whole-system (pandoc and Java take ~40 s a book).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from media.epub import EpubError, epubcheck, read_epub

from .service import CHROMIUM, Service, launch_chromium

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "var" / "artifacts" / "reader"
VENDOR = REPO / "var" / "vendor"
MANUALS = Path("/usr/share/doc/live-manual/epub")
LANGS = ("en", "fr", "ja")


def test_a_file_that_is_not_an_epub_is_refused_with_what_was_found(tmp_path: Path) -> None:
    txt = tmp_path / "book.epub"
    txt.write_text("not a zip")
    with pytest.raises(EpubError, match=r"not an EPUB \(expected a ZIP archive"):
        read_epub(txt)
    z = tmp_path / "other.epub"
    with zipfile.ZipFile(z, "w") as f:
        f.writestr("chapter1.html", "<p>x</p>")
    with pytest.raises(EpubError, match=r"no META-INF/container.xml \(found chapter1.html\)"):
        read_epub(z)
    with zipfile.ZipFile(z, "a") as f:
        f.writestr("META-INF/container.xml",
                   '<container xmlns="urn:oasis:names:tc:opendocument:xmlns:container">'
                   '<rootfiles><rootfile full-path="OEBPS/content.opf"/></rootfiles></container>')
    with pytest.raises(EpubError, match=r"names 'OEBPS/content\.opf', which is not in the archive"):
        read_epub(z)
    res = subprocess.run([sys.executable, "-m", "media", "package", str(z), "--out",
                          str(tmp_path / "out"), "--id", "x", "--title", "X", "--licence", "x"],
                         capture_output=True, text=True, check=False)
    assert res.returncode == 1
    assert "which is not in the archive" in res.stderr and "Traceback" not in res.stderr
    assert not (tmp_path / "out").exists()


needs_tools = pytest.mark.skipif(
    not (MANUALS / "live-manual.en.epub").exists() or shutil.which("pandoc") is None
    or shutil.which("java") is None, reason="needs live-manual-epub, pandoc and epubcheck")


@pytest.fixture(scope="module")
def manuals(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out: dict[str, Path] = {}
    base = tmp_path_factory.mktemp("manuals")
    for lang in LANGS:
        src = MANUALS / f"live-manual.{lang}.epub"
        assert len(epubcheck(src)) > 100, "the shipped file was expected to be invalid"
        pkg = base / lang
        subprocess.run([sys.executable, "-m", "media", "package", str(src), "--out", str(pkg),
                        "--id", f"live-manual-{lang}", "--title", read_epub(src).title,
                        "--lang", lang, "--licence", "GPL-3.0-or-later"], check=True)
        out[lang] = pkg
    return out


@pytest.mark.system
@needs_tools
def test_live_manuals_are_normalised_to_valid_epub3(manuals: dict[str, Path]) -> None:
    for lang, pkg in manuals.items():
        epub = pkg / "book" / "book.epub"
        assert epubcheck(epub) == [], lang
        with zipfile.ZipFile(epub) as z:
            opf = next(n for n in z.namelist() if n.endswith(".opf"))
            text = z.read(opf).decode()
        assert 'version="3.0"' in text and f"<dc:language>{lang}</dc:language>" in text


@pytest.fixture
def service(tmp_path: Path, manuals: dict[str, Path]) -> Iterator[Service]:
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian chromium not installed")
    pytest.importorskip("playwright")
    if not (VENDOR / "epub.min.js").exists():
        pytest.skip("no epub.js (make content)")
    svc = Service(tmp_path)
    svc.extra_config = f'[content]\nvendor_dir = "{VENDOR}"\n'
    cfg = svc.write_config()
    for pkg in manuals.values():
        subprocess.run([sys.executable, "-m", "appliance.cli", "content", "install", "--config",
                        str(cfg), str(pkg)], check=True, cwd=tmp_path)
    svc.start()
    yield svc
    svc.stop()


IFRAME_TEXT = """() => { const f = document.querySelector('#epub-view iframe');
  return f ? f.contentDocument.body.innerText.slice(0, 200) : null; }"""


@pytest.mark.system
@needs_tools
def test_each_manual_reads_in_chromium_and_keeps_its_place(service: Service) -> None:
    from playwright.sync_api import sync_playwright

    base = f"http://127.0.0.1:{service.passenger_port}"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = launch_chromium(p)
        try:
            page = browser.new_context(viewport={"width": 1000, "height": 800}).new_page()
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            for lang in LANGS:
                book = f"live-manual-{lang}"
                page.goto(base + f"/portal/#read/{book}")
                page.wait_for_function(f"window.readerReady === '{book}'", timeout=30000)
                page.wait_for_function(f"({IFRAME_TEXT})()", timeout=15000)
                chapters = page.locator("#toc a")
                assert chapters.count() > 10
                # the chapter list is reachable by keyboard: a real link takes the focus, Enter opens
                third = chapters.nth(3)
                third.focus()
                assert page.evaluate("document.activeElement.closest('#toc') !== null")
                page.keyboard.press("Enter")
                page.wait_for_function("document.querySelector('#toc a[aria-current]') === "
                                       "document.querySelectorAll('#toc a')[3]", timeout=15000)
                # text size: the book's body gets the size
                page.select_option("#epub-size", "150")
                page.wait_for_function("document.querySelector('#epub-view iframe')"
                                       ".contentDocument.body.style.fontSize.startsWith('150')",
                                       timeout=10000)
                page.wait_for_timeout(1000)  # the re-layout at the new size settles
                # turn two pages: the place (a CFI) moves on each time
                for _ in range(2):
                    before = page.evaluate("S.readerAt")
                    page.click("#epub-next")
                    page.wait_for_function(f"S.readerAt && S.readerAt !== {before!r}",
                                           timeout=10000)
                # the chapter mark follows the reading: never a chapter before the one opened
                marked = page.evaluate("Array.from(document.querySelectorAll('#toc a'))"
                                       ".indexOf(document.querySelector('#toc a[aria-current]'))")
                assert marked >= 3
                place = page.evaluate("S.readerAt")
                page.screenshot(path=str(ARTIFACTS / f"{lang}.png"))
                # a reload opens at the same place
                page.reload()
                page.wait_for_function(f"window.readerReady === '{book}'", timeout=30000)
                page.wait_for_function("S.readerAt", timeout=15000)
                assert page.evaluate("S.readerAt") == place, lang
                page.select_option("#epub-size", "100")
            assert errors == []
        finally:
            browser.close()

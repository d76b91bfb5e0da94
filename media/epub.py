"""EPUB -> a checked EPUB 3 reading package (issue 19): repair, normalise with pandoc, epubcheck.

Publishers' EPUBs are often not valid (Debian's ``live-manual-epub``: EPUB 2 whose OPF manifest
lists fragment URIs such as ``about-manual.xhtml#o8`` as items; epubcheck: 1 fatal and 3,403
errors for the English one). The hangar pipeline:

1. **read**: a ZIP with ``META-INF/container.xml`` naming an OPF package document that has a
   title and a spine; otherwise refused (:class:`EpubError` naming what was found);
2. **repair** what pandoc cannot read: manifest items whose ``href`` has a fragment (and spine
   entries pointing at them or at no item) are dropped, the ``mimetype`` entry is written first;
3. **normalise**: pandoc reads the repaired EPUB into standalone HTML (images extracted), then
   writes EPUB 3 with the source's title, language and creator and a navigation document;
4. **check**: ``epubcheck`` (Debian's, ``java -jar /usr/bin/epubcheck``, JSON report) must report
   0 fatals and 0 errors, else the book is refused with the first messages.

The result is ``out/book/book.epub`` (the package's entry, read in the browser with epub.js)
plus ``out/cover.svg`` made from the title. Every step that takes long runs an external tool;
the caller prints progress between steps.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
import xml.etree.ElementTree as ET
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

__all__ = ["EpubError", "EpubInfo", "package_epub", "read_epub"]

_NS = {"c": "urn:oasis:names:tc:opendocument:xmlns:container",
       "opf": "http://www.idpf.org/2007/opf", "dc": "http://purl.org/dc/elements/1.1/"}
EPUBCHECK = Path("/usr/bin/epubcheck")


class EpubError(ValueError):
    """The EPUB cannot be read, repaired or made valid; the message says what was found."""


@dataclass(frozen=True, slots=True)
class EpubInfo:
    """What the OPF says: title, language (BCP 47), creator, OPF path in the ZIP, spine length."""

    title: str
    language: str
    creator: str
    opf: str
    spine: int


def read_epub(src: Path) -> EpubInfo:
    """Read ``src``'s container and OPF; raises EpubError naming what was found instead."""
    try:
        z = zipfile.ZipFile(src)
    except (zipfile.BadZipFile, OSError) as e:
        raise EpubError(f"{src.name}: not an EPUB (expected a ZIP archive): {e}") from e
    with z:
        names = set(z.namelist())
        if "META-INF/container.xml" not in names:
            raise EpubError(f"{src.name}: not an EPUB: no META-INF/container.xml "
                            f"(found {', '.join(sorted(names)[:5]) or 'nothing'})")
        try:
            root = ET.fromstring(z.read("META-INF/container.xml"))
            rootfile = root.find(".//c:rootfile", _NS)
            opf_path = rootfile.get("full-path", "") if rootfile is not None else ""
            if opf_path not in names:
                raise EpubError(f"{src.name}: the container names {opf_path!r}, "
                                "which is not in the archive")
            opf = ET.fromstring(z.read(opf_path))
        except ET.ParseError as e:
            raise EpubError(f"{src.name}: unreadable XML in the container or OPF: {e}") from e
    title = (opf.findtext(".//dc:title", "", _NS) or "").strip()
    spine = opf.findall(".//opf:spine/opf:itemref", _NS)
    if not title:
        raise EpubError(f"{src.name}: the OPF has no dc:title")
    if not spine:
        raise EpubError(f"{src.name}: the OPF spine is empty (no reading order)")
    return EpubInfo(title, (opf.findtext(".//dc:language", "", _NS) or "").strip(),
                    (opf.findtext(".//dc:creator", "", _NS) or "").strip(), opf_path, len(spine))


def _repair(src: Path, dst: Path, info: EpubInfo) -> int:
    """Write ``dst``: ``src`` with fragment manifest items and dangling spine entries dropped."""
    ET.register_namespace("", _NS["opf"])
    ET.register_namespace("dc", _NS["dc"])
    dropped = 0
    with zipfile.ZipFile(src) as z, zipfile.ZipFile(dst, "w") as out:
        out.writestr(zipfile.ZipInfo("mimetype"), b"application/epub+zip",
                     compress_type=zipfile.ZIP_STORED)
        for item in z.infolist():
            if item.filename == "mimetype" or item.is_dir():
                continue
            data = z.read(item)
            if item.filename == info.opf:
                opf = ET.fromstring(data)
                manifest = opf.find("opf:manifest", _NS)
                spine = opf.find("opf:spine", _NS)
                ids: set[str] = set()
                if manifest is not None:
                    for it in list(manifest):
                        if "#" in it.get("href", ""):
                            manifest.remove(it)
                            dropped += 1
                        else:
                            ids.add(it.get("id", ""))
                if spine is not None:
                    for ref in list(spine):
                        if ref.get("idref") not in ids:
                            spine.remove(ref)
                data = ET.tostring(opf, encoding="utf-8", xml_declaration=True)
            out.writestr(item.filename, data, compress_type=zipfile.ZIP_DEFLATED)
    return dropped


def _one_fragment(text: str) -> str:
    """Links ``#file.xhtml#id`` -> ``#id`` (or the file's anchor) that exists in ``text``."""
    text = re.sub(r'\bid="([^"#]*)#([^"]*)"', r'id="\1-\2"', text)
    ids = set(re.findall(r'\bid="([^"]*)"', text))

    def fix(m: re.Match[str]) -> str:
        file, frag = m.group(1), m.group(2)
        for cand in (frag, f"{file}-{frag}", file):
            if cand in ids:
                return f'href="#{cand}"'
        return 'href="#"' if not ids else f'href="#{next(iter(sorted(ids)))}"'

    return re.sub(r'\bhref="#([^"#]*)#([^"]*)"', fix, text)


def _drop_dangling_fragments(epub: Path) -> int:
    """Rewrite ``epub`` so that every link lands; returns the number of links changed.

    A link ``file.xhtml#id`` whose ``id`` the conversion dropped links ``file.xhtml``; a link to
    a file the book does not have is no longer a link.
    """
    with zipfile.ZipFile(epub) as z:
        items = [(i, z.read(i)) for i in z.infolist()]
    pages = {i.filename: d.decode("utf-8") for i, d in items if i.filename.endswith(".xhtml")}
    ids = {name: set(re.findall(r'\bid="([^"]*)"', text)) for name, text in pages.items()}
    names = {i.filename for i, _ in items}
    fixed = 0

    def rewrite(name: str, text: str) -> str:
        base = PurePosixPath(name).parent

        def fix(m: re.Match[str]) -> str:
            nonlocal fixed
            target, _, frag = m.group(1).partition("#")
            if re.match(r"^[a-z][a-z0-9+.-]*:", target):
                return m.group(0)  # http:, mailto: ...: outside the book
            path = name if not target else "/".join(_norm((base / target).parts))
            if path not in names:  # a link to a file the book does not have: no link
                fixed += 1
                return ""
            if not frag or frag in ids.get(path, {frag}):
                return m.group(0)
            fixed += 1
            return f'href="{target or PurePosixPath(name).name}"'

        return re.sub(r'\bhref="([^"]*)"', fix, text)

    with zipfile.ZipFile(epub, "w") as out:
        for info, data in items:
            if info.filename in pages:
                data = rewrite(info.filename, pages[info.filename]).encode("utf-8")
            out.writestr(info, data, compress_type=(zipfile.ZIP_STORED if info.filename == "mimetype"
                                                    else zipfile.ZIP_DEFLATED))
    return fixed


def _norm(parts: tuple[str, ...]) -> list[str]:
    out: list[str] = []
    for p in parts:
        if p == "..":
            if out:
                out.pop()
        elif p != ".":
            out.append(p)
    return out


def _run(cmd: list[str], what: str, cwd: Path | None = None) -> None:
    res = subprocess.run(cmd, capture_output=True, text=True, check=False, cwd=cwd)
    if res.returncode != 0:
        raise EpubError(f"{what} failed ({res.returncode}): {res.stderr.strip()[-500:]}")


def epubcheck(path: Path) -> list[str]:
    """The FATAL and ERROR messages of epubcheck for ``path`` (empty: valid); EpubError if it cannot run."""
    java = shutil.which("java")
    if java is None or not EPUBCHECK.exists():
        raise EpubError("epubcheck is not installed (Debian: apt-get install epubcheck)")
    if not path.is_file():
        raise EpubError(f"{path}: nothing to check")
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        subprocess.run([java, "-jar", str(EPUBCHECK), str(path), "--json", str(report)],
                       capture_output=True, text=True, check=False)
        if not report.exists():
            raise EpubError(f"epubcheck wrote no report for {path.name}")
        messages = json.loads(report.read_text())["messages"]
    return [f"{m['severity']} {m['ID']}: {m['message']}" for m in messages
            if m["severity"] in ("FATAL", "ERROR")]


def package_epub(src: Path, out: Path, *, title: str = "", language: str = "",
                 author: str = "", progress: Callable[[str], None] = lambda _: None
                 ) -> tuple[str, EpubInfo]:
    """Normalise ``src`` into ``out/book/book.epub`` (valid EPUB 3); returns (entry, source info).

    ``title``/``language``/``author`` override the OPF's. Raises EpubError with the reason when
    the file is not an EPUB, pandoc cannot convert it, or the result is not valid.
    """
    if shutil.which("pandoc") is None:
        raise EpubError("pandoc is not installed (Debian: apt-get install pandoc)")
    info = read_epub(src)
    src, out = src.resolve(), out.resolve()  # pandoc runs in a work folder
    book = out / "book"
    book.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        repaired = work / "repaired.epub"
        dropped = _repair(src, repaired, info)
        progress(f"read {src.name}: {info.spine} spine entries; dropped {dropped} bad manifest items")
        _run(["pandoc", "--from=epub", "--to=html5", "--standalone",
              f"--extract-media={work / 'media'}", str(repaired), "-o", str(work / "book.html")],
             "pandoc (reading the EPUB)", cwd=work)
        html = work / "book.html"
        # pandoc names an anchor of another file "file.xhtml#id" (id and link): a URI may have
        # one fragment only, so it becomes "file.xhtml-id" on both sides
        html.write_text(_one_fragment(html.read_text(encoding="utf-8")), encoding="utf-8")
        progress("converted to HTML")
        meta = [f"--metadata=title:{title or info.title}",
                f"--metadata=lang:{language or info.language or 'en'}"]
        if author or info.creator:
            meta.append(f"--metadata=author:{author or info.creator}")
        target = book / "book.epub"
        _run(["pandoc", "--from=html", "--to=epub3", "--toc", "--epub-chapter-level=1", *meta,
              f"--resource-path={work}", str(work / "book.html"), "-o", str(target)],
             "pandoc (writing EPUB 3)", cwd=work)
        fixed = _drop_dangling_fragments(target)
        progress(f"wrote EPUB 3 ({target.stat().st_size // 1024} KiB, {fixed} links to anchors "
                 "the conversion dropped now point at their chapter); checking with epubcheck")
    errors = epubcheck(target)
    if errors:
        target.unlink()
        raise EpubError(f"{src.name}: the normalised EPUB is not valid ({len(errors)} errors): "
                        + "; ".join(errors[:3]))
    progress("epubcheck: 0 fatals, 0 errors")
    return str(PurePosixPath("book/book.epub")), info

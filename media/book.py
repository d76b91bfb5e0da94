"""Text -> a reading package: one HTML page per chapter, a table of contents, a cover image (SVG).

The source is plain UTF-8 text; a line matching ``chapter_regex`` starts a chapter (text before the
first one becomes a "Preface" page if not blank); blank lines separate paragraphs. Output under
``out/book/``: ``index.html`` (contents), ``ch001.html`` ..., ``toc.json`` (``[{"title", "href"}]``),
and ``out/cover.svg``.
"""

from __future__ import annotations

import html
import json
import re
from pathlib import Path

__all__ = ["cover_svg", "package_book"]

_PAGE = """<!doctype html>
<html lang="{lang}"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>body{{font:1.05rem/1.6 Georgia,serif;max-width:40em;margin:auto;padding:1em;color:#222;
background:#fdfaf3}}h1{{font-size:1.4rem}}nav{{display:flex;justify-content:space-between;
margin:2em 0}}a{{color:#0b5394}}</style></head>
<body><article>
{body}
</article><nav>{nav}</nav></body></html>
"""


def _chapters(text: str, chapter_regex: str) -> list[tuple[str, list[str]]]:
    pat = re.compile(chapter_regex)
    chapters: list[tuple[str, list[str]]] = [("Preface", [])]
    para: list[str] = []

    def flush() -> None:
        if para:
            chapters[-1][1].append(" ".join(para))
            para.clear()

    for raw in text.splitlines():
        line = raw.strip()
        if pat.match(line):
            flush()
            chapters.append((line, []))
        elif not line:
            flush()
        else:
            para.append(line)
    flush()
    return [c for c in chapters if c[1] or c[0] != "Preface"]


def cover_svg(title: str, author: str) -> str:
    """A cover image (SVG text) with the title and author."""
    words, lines, cur = title.split(), [], ""
    for w in words:
        if len(cur) + len(w) > 14 and cur:
            lines.append(cur)
            cur = w
        else:
            cur = f"{cur} {w}".strip()
    lines.append(cur)
    tspans = "".join(f'<tspan x="200" dy="{0 if i == 0 else 52}">{html.escape(s)}</tspan>'
                     for i, s in enumerate(lines))
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="400" height="600" viewBox="0 0 400 600">'
            f'<rect width="400" height="600" fill="#3b2f2f"/>'
            f'<rect x="20" y="20" width="360" height="560" fill="none" stroke="#d4af37" '
            f'stroke-width="4"/><text x="200" y="220" fill="#f5e6c8" font-family="Georgia,serif" '
            f'font-size="44" text-anchor="middle">{tspans}</text>'
            f'<text x="200" y="520" fill="#d4af37" font-family="Georgia,serif" font-size="22" '
            f'text-anchor="middle">{html.escape(author)}</text></svg>')


def package_book(src: Path, out: Path, *, title: str, author: str = "", language: str = "en",
                 chapter_regex: str = r"^(CHAPTER|Chapter|BOOK|Book)\b") -> tuple[str, str, int]:
    """Write the reading package for ``src`` under ``out``; returns (entry, cover, chapters).

    Raises OSError if ``src`` cannot be read and ValueError if it holds no text.
    """
    chapters = _chapters(src.read_text(encoding="utf-8"), chapter_regex)
    if not chapters:
        raise ValueError(f"{src}: no text")
    book = out / "book"
    book.mkdir(parents=True, exist_ok=True)
    esc = html.escape
    toc = [{"title": name, "href": f"ch{i + 1:03d}.html"} for i, (name, _) in enumerate(chapters)]
    for i, (name, paras) in enumerate(chapters):
        prev = f'<a href="{toc[i - 1]["href"]}">← {esc(toc[i - 1]["title"])}</a>' if i else "<span></span>"
        nxt = (f'<a href="{toc[i + 1]["href"]}">{esc(toc[i + 1]["title"])} →</a>'
               if i + 1 < len(toc) else "<span></span>")
        body = f"<h1>{esc(name)}</h1>\n" + "\n".join(f"<p>{esc(p)}</p>" for p in paras)
        (book / toc[i]["href"]).write_text(_PAGE.format(
            lang=esc(language), title=esc(f"{title} — {name}"), body=body,
            nav=f'{prev}<a href="index.html">Contents</a>{nxt}'), encoding="utf-8")
    items = "\n".join(f'<li><a href="{t["href"]}">{esc(t["title"])}</a></li>' for t in toc)
    (book / "index.html").write_text(_PAGE.format(
        lang=esc(language), title=esc(title),
        body=f"<h1>{esc(title)}</h1><p>{esc(author)}</p><ol>{items}</ol>", nav=""), encoding="utf-8")
    (book / "toc.json").write_text(json.dumps(toc, ensure_ascii=False))
    (out / "cover.svg").write_text(cover_svg(title, author), encoding="utf-8")
    return "book/index.html", "cover.svg", len(chapters)

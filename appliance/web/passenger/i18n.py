"""The portal's languages: message catalogs, the language a request gets, the page in that language.

Catalogs are JSON files, ``assets/i18n/<lang>.json`` (``lang`` a BCP 47 primary tag such as
``en``, ``fr``, ``ar``): a flat object of message id -> text with ``{name}`` placeholders, plus
``_name`` (the language's own name, shown in the switch) and ``_dir`` (``ltr`` or ``rtl``).
English (``en``) is the reference: every catalog must hold exactly its ids (:func:`check`), and
``index.html``'s ``{{id}}`` placeholders must all be in it.

The language of a request (:meth:`PortalLanguages.negotiate`): the ``lang`` cookie set by the
page's switch when it names a catalog, else the first language of ``Accept-Language`` (RFC 9110
§12.5.4, q-values honoured; ``fr-CA`` matches ``fr``, RFC 4647 lookup) that has a catalog, else
English. The page is filled in that language before it is sent (so the first paint is in the
passenger's language, with ``lang`` and ``dir`` set); its script uses the same catalog for the
strings it writes.
"""

from __future__ import annotations

import hashlib
import html
import json
import re
from collections.abc import Mapping
from importlib import resources

from .static import compress

__all__ = ["CatalogError", "PortalLanguages", "check", "parse_accept_language"]

REFERENCE = "en"
_PLACEHOLDER = re.compile(r"\{\{([A-Za-z0-9_.]+)\}\}")
_TAG = re.compile(r"^[A-Za-z]{1,8}(?:-[A-Za-z0-9]{1,8})*$|^\*$")


class CatalogError(ValueError):
    """A catalog is missing ids, has ids English does not, or the page names an unknown id."""


def parse_accept_language(header: str | None, limit: int = 16) -> list[str]:
    """The language ranges of an ``Accept-Language`` value, best first (q=0 dropped).

    ``"fr-CA,fr;q=0.9,en;q=0.5"`` -> ``["fr-ca", "fr", "en"]``; malformed entries are skipped;
    at most ``limit`` entries are read (the header is client input).
    """
    ranges: list[tuple[float, int, str]] = []
    for i, part in enumerate((header or "").split(",")[:limit]):
        tag, _, params = part.strip().partition(";")
        tag = tag.strip().lower()
        if not tag or not _TAG.match(tag):
            continue
        q = 1.0
        for p in params.split(";"):
            k, _, v = p.strip().partition("=")
            if k.strip().lower() == "q":
                try:
                    q = float(v)
                except ValueError:
                    q = -1.0
        if 0.0 < q <= 1.0:
            ranges.append((-q, i, tag))
    return [tag for _, _, tag in sorted(ranges)]


def check(catalogs: Mapping[str, Mapping[str, str]], page: str) -> None:
    """Raise :class:`CatalogError` unless the catalogs and the page agree.

    Every catalog must have exactly English's ids, none empty, and every ``{{id}}`` of ``page``
    (other than ``_lang``/``_dir``/``_languages``) must be in English.
    """
    ref = catalogs[REFERENCE]
    problems: list[str] = []
    for lang, cat in sorted(catalogs.items()):
        missing = sorted(set(ref) - set(cat))
        extra = sorted(set(cat) - set(ref))
        empty = sorted(k for k, v in cat.items() if not str(v).strip())
        if missing:
            problems.append(f"{lang}: missing {', '.join(missing)}")
        if extra:
            problems.append(f"{lang}: not in {REFERENCE}: {', '.join(extra)}")
        if empty:
            problems.append(f"{lang}: empty {', '.join(empty)}")
        if cat.get("_dir") not in ("ltr", "rtl"):
            problems.append(f"{lang}: _dir must be ltr or rtl")
    unknown = sorted({k for k in _PLACEHOLDER.findall(page)
                      if not k.startswith("_") and k not in ref})
    if unknown:
        problems.append(f"index.html names ids not in {REFERENCE}: {', '.join(unknown)}")
    if problems:
        raise CatalogError("; ".join(problems))


class PortalLanguages:
    """The catalogs shipped in ``assets/i18n`` and the page rendered once per language."""

    def __init__(self) -> None:
        """Load and :func:`check` the catalogs and ``index.html``; raises CatalogError."""
        root = resources.files(__package__).joinpath("assets")
        self.catalogs: dict[str, dict[str, str]] = {}
        for item in root.joinpath("i18n").iterdir():
            if item.name.endswith(".json"):
                self.catalogs[item.name[:-5]] = json.loads(item.read_text(encoding="utf-8"))
        self.page = root.joinpath("index.html").read_text(encoding="utf-8")
        check(self.catalogs, self.page)
        self._pages: dict[tuple[str, tuple[tuple[str, str], ...]], tuple[bytes, str]] = {}
        self._compressed: dict[bytes, dict[str, bytes]] = {}

    @property
    def languages(self) -> list[str]:
        """The catalog tags, English first."""
        return sorted(self.catalogs, key=lambda lang: (lang != REFERENCE, lang))

    def negotiate(self, accept_language: str | None, cookie: str | None = None) -> str:
        """The catalog tag for a request: the cookie's if known, else Accept-Language, else en."""
        if cookie and cookie.lower() in self.catalogs:
            return cookie.lower()
        for tag in parse_accept_language(accept_language):
            if tag == "*":
                return REFERENCE
            parts = tag.split("-")
            while parts:  # RFC 4647 lookup: fr-ca -> fr
                if "-".join(parts) in self.catalogs:
                    return "-".join(parts)
                parts.pop()
        return REFERENCE

    def index(self, lang: str, extra: Mapping[str, str] | None = None) -> tuple[bytes, str]:
        """``index.html`` filled in ``lang`` (a known tag) and its ETag.

        ``extra``: more ``{{_name}}`` values (e.g. the assets' hashed URLs); ``{{_i18n_json}}``
        is the catalog itself (so the page's script needs no request for it).
        """
        key = (lang, tuple(sorted((extra or {}).items())))
        cached = self._pages.get(key)
        if cached is None:
            cat = self.catalogs[lang]
            options = "".join(
                f'<option value="{t}" lang="{t}"{" selected" if t == lang else ""}>'
                f'{html.escape(self.catalogs[t]["_name"])}</option>' for t in self.languages)
            values = {"_lang": lang, "_dir": cat["_dir"], "_languages": options,
                      "_i18n_json": json.dumps(cat, ensure_ascii=False).replace("</", "<\\/"),
                      "_css_inline": "", "_js_url": "/portal/app.js",
                      "_asset_urls": "{}", "_media_port": "0", **(extra or {})}

            def fill(m: re.Match[str]) -> str:
                key = m.group(1)
                return values[key] if key in values else html.escape(cat[key])

            body = _PLACEHOLDER.sub(fill, self.page).encode()
            cached = (body, f'"{lang}-{hashlib.sha256(body).hexdigest()[:20]}"')
            self._pages[key] = cached
        return cached

    def compressed(self, body: bytes) -> dict[str, bytes]:
        """Gzip and brotli bodies of a page made by :meth:`index`, computed once per page."""
        got = self._compressed.get(body)
        if got is None:
            got = self._compressed[body] = compress(body)
        return got

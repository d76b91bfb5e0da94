"""The portal's languages: catalogs complete, every string in a catalog, the language negotiated.

A string that the page or its script shows and that is missing from a catalog fails here: the
catalogs must hold exactly English's ids; every ``{{id}}`` and ``data-i18n*`` id of
``index.html`` and every literal ``t("id")`` of ``app.js`` must be in English; every id the script
builds from data (``phase.<phase>``, ``mode.<mode>``, ``survey.<question>``) must be there for
each value; and ``index.html`` holds no text of its own outside the placeholders.
"""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from importlib import resources

import pytest
from hypothesis import given
from hypothesis import strategies as st

from appliance.content.feedback import QUESTIONS
from appliance.modes.phase import Phase
from appliance.modes.policy import Mode
from appliance.web.passenger.i18n import CatalogError, PortalLanguages, check, parse_accept_language

ASSETS = resources.files("appliance.web.passenger").joinpath("assets")
APP_JS = ASSETS.joinpath("app.js").read_text(encoding="utf-8")
PAGE = ASSETS.joinpath("index.html").read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def langs() -> PortalLanguages:
    return PortalLanguages()


def test_english_french_spanish_and_a_right_to_left_language_ship(langs: PortalLanguages) -> None:
    assert {"en", "fr", "es"} <= set(langs.catalogs)
    assert any(c["_dir"] == "rtl" for c in langs.catalogs.values())
    # complete and translated, not copies of English
    en = langs.catalogs["en"]
    for lang in ("fr", "es", "ar"):
        same = [k for k, v in langs.catalogs[lang].items()
                if v == en[k] and not k.startswith("_") and not re.fullmatch(r"[{}\w\s.]*", v)]
        assert len(same) <= 4, f"{lang}: untranslated {same}"


def test_a_missing_or_extra_id_fails_the_check(langs: PortalLanguages) -> None:
    cats = {k: dict(v) for k, v in langs.catalogs.items()}
    del cats["fr"]["menu.order"]
    cats["es"]["menu.extra"] = "x"
    cats["ar"]["nav.menu"] = " "
    with pytest.raises(CatalogError) as e:
        check(cats, PAGE)
    msg = str(e.value)
    assert "fr: missing menu.order" in msg and "es: not in en: menu.extra" in msg
    assert "ar: empty nav.menu" in msg
    with pytest.raises(CatalogError, match=r"index\.html names ids not in en: nope"):
        check(langs.catalogs, PAGE + "{{nope}}")


def test_every_id_the_page_and_script_use_is_in_the_catalog(langs: PortalLanguages) -> None:
    en = langs.catalogs["en"]
    used = set(re.findall(r"\b(?:t|tr)\(\"([a-z_]+\.[A-Za-z_.]+)\"", APP_JS))
    used |= set(re.findall(r'data-i18n(?:-[a-z-]+)?="([^"]+)"', PAGE))
    used |= {k for k in re.findall(r"\{\{([A-Za-z0-9_.]+)\}\}", PAGE) if not k.startswith("_")}
    assert len(used) > 40
    assert sorted(used - set(en)) == []
    # ids built from data: every value has its string
    built = {f"phase.{p}" for p in Phase} | {f"mode.{m}" for m in Mode}
    built |= {f"survey.{q}" for q in QUESTIONS}
    built |= {f"player.size_{k}" for k in ("small", "medium", "large", "xlarge")}
    built |= {f"player.bg_{k}" for k in ("dark", "none")}
    built |= {f"reader.theme_{k}" for k in ("light", "sepia", "dark")}
    assert sorted(built - set(en)) == []
    assert "`phase.${f.phase}`" in APP_JS and "`mode.${doc.mode}`" in APP_JS


class _Text(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.texts: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in ("meta", "link", "input", "br", "img"):
            self.stack.append(tag)
        for name, value in attrs:
            if name in ("title", "aria-label", "alt") and value and not value.startswith("{{"):
                self.texts.append(f"{tag}[{name}]={value}")

    def handle_endtag(self, tag: str) -> None:
        if self.stack and self.stack[-1] == tag:
            self.stack.pop()

    def handle_data(self, data: str) -> None:
        if self.stack and self.stack[-1] in ("script", "style"):
            return
        text = re.sub(r"\{\{[A-Za-z0-9_.]+\}\}", "", data).strip()
        if text and text not in ("–",):
            self.texts.append(text)


def test_the_page_has_no_text_outside_the_catalog() -> None:
    p = _Text()
    p.feed(PAGE)
    assert p.texts == []


@pytest.mark.parametrize("lang,title,direction", [("en", "On board", "ltr"), ("fr", "À bord", "ltr"),
                                                  ("es", "A bordo", "ltr"),
                                                  ("ar", "على متن الطائرة", "rtl")])
def test_the_page_is_filled_in_each_language(langs: PortalLanguages, lang: str, title: str,
                                             direction: str) -> None:
    body, etag = langs.index(lang)
    text = body.decode()
    assert f'<html lang="{lang}" dir="{direction}">' in text
    assert f"<title data-i18n=\"app.title\">{title}</title>" in text
    assert "{{" not in text
    assert f'<option value="{lang}" lang="{lang}" selected>' in text
    assert etag.startswith(f'"{lang}-')


@pytest.mark.parametrize("header,cookie,want", [
    ("fr-FR,fr;q=0.9,en;q=0.8", None, "fr"),
    ("de-DE,de;q=0.9,es;q=0.5", None, "es"),      # no German: the next one offered
    ("en;q=0.2,fr;q=0.9", None, "fr"),            # q-values, not order
    ("de", None, "en"),                            # nothing offered: English
    ("*", None, "en"),
    ("ar-EG", None, "ar"),
    ("fr;q=0", None, "en"),                        # q=0: not acceptable
    (None, None, "en"),
    ("fr", "es", "es"),                            # the passenger's switch wins
    ("fr", "xx", "fr"),                            # an unknown cookie is ignored
    ("fr;q=abc, es", None, "es"),                  # a malformed q drops that entry
])
def test_negotiation(langs: PortalLanguages, header: str | None, cookie: str | None,
                     want: str) -> None:
    assert langs.negotiate(header, cookie) == want


@given(st.text(max_size=300))
def test_any_accept_language_value_is_handled(header: str) -> None:
    tags = parse_accept_language(header)
    assert len(tags) <= 16
    assert all(t == t.lower() and t for t in tags)
    assert PortalLanguages.negotiate(_LANGS, header, None) in _LANGS.catalogs


_LANGS = PortalLanguages()


def test_catalog_files_are_json_objects_of_strings() -> None:
    for item in ASSETS.joinpath("i18n").iterdir():
        data = json.loads(item.read_text(encoding="utf-8"))
        assert all(isinstance(k, str) and isinstance(v, str) for k, v in data.items()), item.name

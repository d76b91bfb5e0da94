"""The portal's static files: encoding negotiation, precompression, hashed names (issue 16)."""

from __future__ import annotations

import gzip
from pathlib import Path

import brotli
import pytest
from fastapi import FastAPI, Request
from fastapi.testclient import TestClient
from hypothesis import given
from hypothesis import strategies as st

from appliance.web.passenger.portal import PortalAssets
from appliance.web.passenger.static import (
    IMMUTABLE,
    StaticFiles,
    choose_encoding,
    compress,
    hashed_name,
)


@pytest.mark.parametrize("header,want", [
    ("gzip, deflate, br", "br"),
    ("gzip, deflate, br, zstd", "br"),
    ("br;q=0, gzip", "gzip"),
    ("gzip;q=0.5", "gzip"),
    ("identity", "identity"),
    (None, "identity"),
    ("", "identity"),
    ("*", "br"),
    ("*;q=0", "identity"),
    ("br;q=abc, gzip", "gzip"),  # a malformed q: that coding is not acceptable
    ("deflate", "identity"),
])
def test_negotiation(header: str | None, want: str) -> None:
    assert choose_encoding(header, {"identity", "br", "gzip"}) == want


def test_only_the_encodings_held_are_chosen() -> None:
    assert choose_encoding("br, gzip", {"identity", "gzip"}) == "gzip"
    assert choose_encoding("br", {"identity"}) == "identity"


@given(st.binary(max_size=4096) | st.text(max_size=4096).map(str.encode))
def test_compressed_bodies_decompress_to_the_data_and_are_smaller(data: bytes) -> None:
    bodies = compress(data)
    assert set(bodies) <= {"br", "gzip"}
    for enc, body in bodies.items():
        assert len(body) < len(data)
        assert (brotli.decompress(body) if enc == "br" else gzip.decompress(body)) == data


def test_build_time_sidecars_are_used_only_when_they_match(tmp_path: Path) -> None:
    src = tmp_path / "lib.js"
    data = b"function f() { return 1; }\n" * 200
    src.write_bytes(data)
    (tmp_path / "lib.js.br").write_bytes(marker := brotli.compress(data, quality=1))
    (tmp_path / "lib.js.gz").write_bytes(gzip.compress(b"an older version" * 50))
    bodies = compress(data, src)
    assert bodies["br"] == marker                       # matches: used as it is
    assert gzip.decompress(bodies["gzip"]) == data      # stale: computed again
    (tmp_path / "lib.js.br").write_bytes(b"not brotli at all")
    assert brotli.decompress(compress(data, src)["br"]) == data


def test_hashed_names_follow_the_content() -> None:
    assert hashed_name("vendor/hls.min.js", b"a").startswith("vendor/hls.min.")
    assert hashed_name("vendor/hls.min.js", b"a").endswith(".js")
    assert hashed_name("app.js", b"a") != hashed_name("app.js", b"b")
    files = StaticFiles("/portal/")
    a = files.add("map.js", b"// the map\n" * 100)
    assert files.lookup("map.js") == (a, False)
    assert files.lookup(a.url.removeprefix("/portal/")) == (a, True)
    assert files.urls() == {"map.js": a.url}
    assert len({a.etags[e] for e in a.bodies}) == len(a.bodies) == 3


def test_every_asset_is_served_precompressed_and_hashed_urls_are_immutable(tmp_path: Path) -> None:
    (tmp_path / "extra.js").write_bytes(b"window.extra = 1;\n" * 300)  # a vendor file, any name
    assets = PortalAssets(tmp_path, media_port=lambda: 8082)
    app = FastAPI()

    @app.get("/portal/")
    def page(request: Request):  # type: ignore[no-untyped-def]
        return assets.page(request)

    @app.get("/portal/{name:path}")
    def file(name: str, request: Request):  # type: ignore[no-untyped-def]
        return assets.response(name, request)

    urls = assets.static.urls()
    assert {"app.js", "app.css", "i18n/en.json", "vendor/extra.js"} <= set(urls)
    with TestClient(app) as c:
        r = c.get("/portal/", headers={"Accept-Encoding": "br"})
        assert r.headers["content-encoding"] == "br" and r.headers["cache-control"] == "no-cache"
        assert "window.ASSET_URLS = {" in r.text and urls["vendor/extra.js"] in r.text
        assert '<link rel="stylesheet"' not in r.text  # the style is inline: nothing blocks
        assert "})(8082);" in r.text  # preconnect to the media server, where the posters are
        for name, url in urls.items():
            hashed = c.get(url, headers={"Accept-Encoding": "gzip"})
            assert hashed.status_code == 200, name
            assert hashed.headers["cache-control"] == IMMUTABLE
            plain = c.get("/portal/" + name, headers={"Accept-Encoding": "identity"})
            assert plain.headers["cache-control"] == "no-cache"
            assert "content-encoding" not in plain.headers
            assert hashed.content == plain.content  # the client decoded gzip
            if name.endswith((".js", ".css", ".json")):
                assert hashed.headers["content-encoding"] == "gzip"
                assert "Accept-Encoding" in hashed.headers["vary"]
            again = c.get(url, headers={"Accept-Encoding": "gzip",
                                        "If-None-Match": hashed.headers["etag"]})
            assert again.status_code == 304
        assert c.get("/portal/app.0123456789ab.js").status_code == 404

"""The moving map's places: a small list derived from Natural Earth populated places.

``python -m media.places SRC.geojson OUT.json`` reads a Natural Earth populated-places GeoJSON
(``ne_*_populated_places_simple``: public domain; `make content` takes the one the npm package
``globe.gl`` ships) and writes ``{"source", "licence", "places": [[name, lat, lon, rank], ...]}``:
coordinates in degrees to 3 decimals, sorted most important first (Natural Earth's ``scalerank``,
then the larger ``pop_max``), so the page labels the first ones that fit. Exit 1 on a file that
is not such a GeoJSON.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

__all__ = ["derive", "main"]


def _number(props: dict[str, Any], key: str, default: float) -> float:
    v = props.get(key, props.get(key.upper()))
    return default if v is None else float(v)


def derive(doc: dict[str, Any], source: str = "") -> dict[str, Any]:
    """The places document of a populated-places FeatureCollection ``doc`` (ValueError if not one)."""
    if doc.get("type") != "FeatureCollection" or not isinstance(doc.get("features"), list):
        raise ValueError("not a GeoJSON FeatureCollection")
    rows: list[tuple[float, float, str, float, float]] = []
    for f in doc["features"]:
        props, geom = f.get("properties") or {}, f.get("geometry") or {}
        name = props.get("name") or props.get("NAME")
        coords = geom.get("coordinates") if geom.get("type") == "Point" else None
        if not name or not coords or len(coords) < 2:
            continue
        lon, lat = float(coords[0]), float(coords[1])
        if not (-90.0 <= lat <= 90.0 and -180.0 <= lon <= 180.0):
            continue
        rank = _number(props, "scalerank", 10.0)
        pop = _number(props, "pop_max", 0.0)
        rows.append((rank, -pop, str(name), lat, lon))
    if not rows:
        raise ValueError("no populated places in the file")
    rows.sort()
    return {"source": source or "Natural Earth populated places", "licence": "Public domain",
            "places": [[name, round(lat, 3), round(lon, 3), int(rank)]
                       for rank, _pop, name, lat, lon in rows]}


def main(argv: list[str] | None = None) -> int:
    """``SRC OUT``: derive the places file (see the module doc)."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: python -m media.places SRC.geojson OUT.json", file=sys.stderr)
        return 2
    src, out = Path(args[0]), Path(args[1])
    try:
        doc = derive(json.loads(src.read_text(encoding="utf-8")), f"Natural Earth ({src.name})")
    except (OSError, ValueError) as e:
        print(f"places: {src}: {e}", file=sys.stderr)
        return 1
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc, ensure_ascii=False, separators=(",", ":")), encoding="utf-8")
    tmp.replace(out)
    print(f"places: {len(doc['places'])} places -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

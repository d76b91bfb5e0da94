"""media.places: the moving map's places derived from a Natural Earth populated-places GeoJSON."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from media.places import derive, main


def _feature(name: str, lon: float, lat: float, rank: int, pop: int) -> dict[str, object]:
    return {"type": "Feature", "geometry": {"type": "Point", "coordinates": [lon, lat]},
            "properties": {"name": name, "scalerank": rank, "pop_max": pop}}


def test_places_sorted_by_rank_then_population_and_bad_rows_dropped(tmp_path: Path) -> None:
    doc = {"type": "FeatureCollection", "features": [
        _feature("Toulouse", 1.4437, 43.6047, 3, 900_000),
        _feature("Paris", 2.3514, 48.8566, 0, 9_900_000),
        _feature("Lyon", 4.835, 45.764, 3, 1_600_000),
        _feature("Nowhere", 200.0, 95.0, 0, 1),  # out of range
        {"type": "Feature", "geometry": None, "properties": {"name": "No point"}}]}
    out = derive(doc)
    assert [p[0] for p in out["places"]] == ["Paris", "Lyon", "Toulouse"]
    assert out["places"][0] == ["Paris", 48.857, 2.351, 0]
    src, dst = tmp_path / "in.geojson", tmp_path / "places.json"
    src.write_text(json.dumps(doc))
    assert main([str(src), str(dst)]) == 0
    assert json.loads(dst.read_text())["places"] == out["places"]
    src.write_text('{"type": "Feature"}')
    assert main([str(src), str(dst)]) == 1
    with pytest.raises(ValueError):
        derive({"type": "FeatureCollection", "features": []})

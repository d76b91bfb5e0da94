"""The content package's manifest (``package.json``): the contract between ``media/`` and the appliance.

A package is a directory holding ``package.json`` and the files it lists. Shape::

    {"format": 1, "id": "big-buck-bunny", "title": "...", "kind": "video" | "book",
     "languages": ["en"], "duration_s": 5.28 | null, "rating": "G", "licence": "CC-BY-3.0",
     "attribution": "...", "description": "...", "not_before": "2024-01-01T00:00:00Z" | null,
     "not_after": ... | null, "flight_only": false, "entry": "hls/master.m3u8",
     "poster": "poster.jpg", "files": {"hls/master.m3u8": {"size": 123, "sha256": "ab.."}, ...}}

``not_before``/``not_after`` are UTC (a bare date means its midnight UTC); the title may be shown while
``not_before <= aircraft UTC < not_after``. The package's version is :func:`digest` of the manifest
(SHA-256 of its canonical JSON), so an installed directory name says exactly what it holds.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = ["FORMAT", "MANIFEST", "FileEntry", "Manifest", "digest", "safe_relpath"]

FORMAT = 1
MANIFEST = "package.json"
_REL = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*(/[A-Za-z0-9_][A-Za-z0-9_.-]*)*$")


def safe_relpath(path: str) -> bool:
    """True if ``path`` is a plain relative POSIX path: no ``..``, no leading ``/``, no odd bytes."""
    return bool(_REL.match(path)) and ".." not in path.split("/") and len(path) <= 200


class FileEntry(BaseModel):
    """One file of the package: size in bytes and SHA-256 (hex)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    size: Annotated[int, Field(ge=0)]
    sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]


class Localized(BaseModel):
    """A title's title, synopsis and rating in one language (any of them may be left out)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    title: Annotated[str, Field(min_length=1, max_length=200)] | None = None
    description: Annotated[str, Field(max_length=2000)] | None = None
    rating: Annotated[str, Field(max_length=16)] | None = None


class PosterSize(BaseModel):
    """The poster at one width (a responsive size for the catalog's ``srcset``): px and file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    w: Annotated[int, Field(ge=16, le=4096)]
    h: Annotated[int, Field(ge=16, le=4096)]
    path: str


class Manifest(BaseModel):
    """``package.json``; raises pydantic's ValidationError on any bad or unknown field."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    format: Literal[1] = 1
    id: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]{0,63}$")]
    title: Annotated[str, Field(min_length=1, max_length=200)]
    kind: Literal["video", "book"]
    languages: Annotated[tuple[str, ...], Field(min_length=1)]
    duration_s: Annotated[float, Field(ge=0)] | None = None
    rating: Annotated[str, Field(max_length=16)] = "NR"
    licence: Annotated[str, Field(min_length=1, max_length=100)]
    attribution: Annotated[str, Field(max_length=500)] = ""
    description: Annotated[str, Field(max_length=2000)] = ""
    not_before: dt.datetime | None = None
    not_after: dt.datetime | None = None
    flight_only: bool = False
    #: Title, synopsis and rating per language (BCP 47 tag -> Localized); the top-level ones are
    #: the default. Optional: packages made before it have none.
    localized: dict[Annotated[str, Field(pattern=r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})*$")],
                    Localized] = Field(default_factory=dict)
    entry: str
    poster: str | None = None
    #: The poster in responsive sizes, narrowest first (optional: packages made before have none).
    posters: tuple[PosterSize, ...] = ()
    files: dict[str, FileEntry]

    @field_validator("languages")
    @classmethod
    def _langs(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for lang in v:
            if not re.match(r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})*$", lang):
                raise ValueError(f"bad language tag {lang!r}")
        return v

    @field_validator("not_before", "not_after", mode="before")
    @classmethod
    def _utc(cls, v: object) -> object:
        if isinstance(v, str) and re.match(r"^\d{4}-\d{2}-\d{2}$", v):
            return f"{v}T00:00:00Z"
        return v

    @field_validator("not_before", "not_after")
    @classmethod
    def _aware(cls, v: dt.datetime | None) -> dt.datetime | None:
        if v is not None and v.tzinfo is None:
            return v.replace(tzinfo=dt.UTC)
        return v

    @model_validator(mode="after")
    def _paths(self) -> Manifest:
        for p in self.files:
            if not safe_relpath(p) or p == MANIFEST:
                raise ValueError(f"bad file path {p!r}")
        refs: tuple[tuple[str, str | None], ...] = (
            ("entry", self.entry), ("poster", self.poster),
            *(("posters", p.path) for p in self.posters))
        for name, ref in refs:
            if ref is not None and ref not in self.files:
                raise ValueError(f"{name} {ref!r} is not among the files")
        if self.not_before and self.not_after and self.not_after <= self.not_before:
            raise ValueError("not_after is not after not_before")
        return self

    def poster_files(self) -> set[str]:
        """The poster's file and its responsive sizes' files (shown even for a locked title)."""
        return {p.path for p in self.posters} | ({self.poster} if self.poster else set())

    def window(self) -> tuple[float | None, float | None]:
        """The licensing window as epoch seconds (UTC): (not_before, not_after), None = open."""
        return (self.not_before.timestamp() if self.not_before else None,
                self.not_after.timestamp() if self.not_after else None)

    def canonical(self) -> bytes:
        """The manifest as canonical JSON bytes (sorted keys, no spaces)."""
        doc = self.model_dump(mode="json")
        if not doc["localized"]:  # a package without translations keeps the version it had
            del doc["localized"]
        if not doc["posters"]:  # and so does one without poster sizes
            del doc["posters"]
        return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


def digest(manifest: Manifest) -> str:
    """The package version: SHA-256 (hex) of the canonical manifest."""
    return hashlib.sha256(manifest.canonical()).hexdigest()

"""``media``: package content for the appliance.

- ``media package SRC --out DIR --id ID --title T [--kind video|book] [--lang en ...]
  [--rating R] [--licence L] [--attribution A] [--not-before DATE] [--not-after DATE]
  [--flight-only] [--segment-seconds 4] [--renditions 2] [--segment-type mpegts|fmp4]
  [--author A] [--chapter-regex RE]``: a video (any container ffmpeg reads) becomes an HLS package;
  a ``.txt`` becomes a reading package. Exit 0 on success, 1 on a packaging failure, 2 on bad usage.
- ``media check DIR``: check a package as the appliance will at install (exit 1 with the reason).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from appliance.content.manifest import Manifest
from appliance.content.validate import check_package
from appliance.errors import PackageError

from .book import cover_svg, package_book
from .epub import package_epub
from .manifest_writer import write_manifest
from .tracks import TrackKind, parse_track
from .video import VideoError, package_video, poster_sizes

__all__ = ["main"]


#: Option names and plain words for the manifest's fields (a bad one is one line, not pydantic's).
_OPTION = {"id": ("--id", "a-z, 0-9 and '-', starting with a letter or digit, at most 64 "
                          "characters (e.g. big-buck-bunny)"),
           "title": ("--title", "1 to 200 characters"),
           "localized": ("--localized", "LANG:FIELD=TEXT, LANG a language tag such as fr, "
                                        "a title of 1 to 200 characters"),
           "languages": ("--lang", "a language tag such as en or pt-BR"),
           "rating": ("--rating", "at most 16 characters"),
           "licence": ("--licence", "1 to 100 characters"),
           "attribution": ("--attribution", "at most 500 characters"),
           "description": ("--description", "at most 2000 characters"),
           "not_before": ("--not-before", "a UTC date (2025-01-31) or date-time"),
           "not_after": ("--not-after", "a UTC date (2025-01-31) or date-time, after --not-before")}


def field_error(e: ValidationError, fields: dict[str, Any]) -> str:
    """The first error of a manifest validation as one line naming the option and what it takes."""
    err = e.errors()[0]
    loc = [str(x) for x in err.get("loc", ())]
    name = loc[0] if loc else ""
    if name in _OPTION:
        opt, takes = _OPTION[name]
        return f"{opt} {fields.get(name)!r} is not valid: {takes}"
    msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
    return f"{'.'.join(loc) + ': ' if loc else ''}{msg}"


def check_fields(fields: dict[str, Any]) -> str | None:
    """Check the descriptive fields before any encoding; the reason (one line) or None."""
    try:
        Manifest.model_validate({**fields, "entry": "x", "poster": None,
                                 "files": {"x": {"size": 0, "sha256": "0" * 64}}})
    except ValidationError as e:
        return field_error(e, fields)
    return None


@contextmanager
def progress_display(label: str) -> Iterator[Callable[[float, float], None]]:
    """A ``progress(done_s, total_s)`` callback: a rich bar on a terminal, else lines.

    Without a terminal (logs, CI): one line per 10 % of the source encoded, and at least one every
    15 s while it moves.
    """
    if sys.stderr.isatty():
        from rich.progress import BarColumn, Progress, TaskProgressColumn, TimeRemainingColumn

        with Progress("[progress.description]{task.description}", BarColumn(),
                      TaskProgressColumn(), TimeRemainingColumn(), transient=True,
                      console=None) as bar:
            task = bar.add_task(label, total=None)
            yield lambda done, total: bar.update(task, completed=done, total=total)
        return
    last = [-1.0, 0.0]  # percentage and monotonic time of the last line

    def lines(done: float, total: float) -> None:
        pct = int(100 * done / total) if total > 0 else 100
        now = time.monotonic()
        if (pct // 10 > last[0] // 10 or (pct == 100 and last[0] < 100)
                or (pct > last[0] and now - last[1] >= 15)):
            last[:] = [pct, now]
            print(f"media: {label} {pct}% ({done:.1f} s of {total:.1f} s)", file=sys.stderr,
                  flush=True)
    yield lines


def _package(args: argparse.Namespace) -> int:
    src: Path = args.src
    kind = args.kind or ("book" if src.suffix.lower() in (".txt", ".text", ".epub") else "video")
    out: Path = args.out
    fields: dict[str, Any] = {
        "id": args.id, "title": args.title, "kind": kind, "languages": args.lang or ["en"],
        "rating": args.rating, "licence": args.licence, "attribution": args.attribution,
        "description": args.description, "not_before": args.not_before,
        "not_after": args.not_after, "flight_only": args.flight_only}
    localized: dict[str, dict[str, str]] = {}
    for spec in args.localized or ():
        head, sep, text = spec.partition("=")
        lang, _, field = head.partition(":")
        if not sep or field not in ("title", "description", "rating"):
            print(f"media package: --localized {spec!r} is not LANG:FIELD=TEXT with FIELD "
                  "title, description or rating", file=sys.stderr)
            return 2
        localized.setdefault(lang, {})[field] = text
    if localized:
        fields["localized"] = localized
    bad = check_fields(fields)
    if bad:
        print(f"media package: {bad}", file=sys.stderr)
        return 2
    if not src.is_file():
        print(f"media package: {src}: no such file", file=sys.stderr)
        return 2
    if out.exists() and any(out.iterdir()):
        if not args.force:
            print(f"media: {out} exists and is not empty (--force replaces it)", file=sys.stderr)
            return 2
        shutil.rmtree(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        if kind == "video":
            kinds: tuple[tuple[TrackKind, list[str] | None], ...] = (
                ("audio", args.audio), ("description", args.audio_description),
                ("subtitles", args.subtitles), ("captions", args.captions))
            tracks = [parse_track(kind, spec) for kind, specs in kinds for spec in specs or ()]
            with progress_display(f"encoding {src.name}") as progress:
                entry, poster, info = package_video(src, work, segment_s=args.segment_seconds,
                                                    renditions=args.renditions,
                                                    segment_type=args.segment_type, tracks=tracks,
                                                    audio_language=(args.lang or ["en"])[0],
                                                    progress=progress)
            fields |= {"entry": entry, "poster": poster, "duration_s": round(info.duration_s, 3),
                       "posters": poster_sizes(info)}
        elif src.suffix.lower() == ".epub":
            entry, book = package_epub(src, work, title=args.title,
                                       language=(args.lang or [""])[0], author=args.author,
                                       progress=lambda m: print(f"media: {m}", flush=True))
            (work / "cover.svg").write_text(cover_svg(args.title, args.author or book.creator),
                                            encoding="utf-8")
            fields |= {"entry": entry, "poster": "cover.svg",
                       "languages": args.lang or [book.language or "en"]}
        else:
            entry, poster, _ = package_book(src, work, title=args.title, author=args.author,
                                            language=(args.lang or ["en"])[0],
                                            chapter_regex=args.chapter_regex)
            fields |= {"entry": entry, "poster": poster}
        manifest = write_manifest(work, fields)
        work.rename(out)
    except ValidationError as e:
        shutil.rmtree(work, ignore_errors=True)
        print(f"media package: {field_error(e, fields)}", file=sys.stderr)
        return 1
    except (VideoError, PackageError, OSError, ValueError) as e:  # EpubError is a ValueError
        shutil.rmtree(work, ignore_errors=True)
        print(f"media package: {e}", file=sys.stderr)
        return 1
    print(f"{out}: {manifest.kind} {manifest.id!r}, {len(manifest.files)} files")
    return 0


def _check(args: argparse.Namespace) -> int:
    try:
        pkg = check_package(args.dir)
    except PackageError as e:
        print(f"media: refused: {e}", file=sys.stderr)
        return 1
    print(f"{args.dir}: ok, {pkg.manifest.kind} {pkg.manifest.id!r} version {pkg.version[:16]}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    ap = argparse.ArgumentParser(prog="media", description=__doc__.replace("``", ""),
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("package", help="package a video or a text")
    p.add_argument("src", type=Path, help="a video (any container ffmpeg reads) or a .txt book")
    p.add_argument("--out", type=Path, required=True, help="the package directory to write")
    p.add_argument("--id", required=True,
                   help="content id: a-z, 0-9 and '-', at most 64 characters (big-buck-bunny)")
    p.add_argument("--title", required=True, help="the title passengers see")
    p.add_argument("--kind", choices=["video", "book"], help="default: book for .txt, else video")
    p.add_argument("--lang", action="append", help="language tag (repeatable; default en)")
    p.add_argument("--rating", default="NR", help="age rating shown in the catalog (default NR)")
    p.add_argument("--licence", required=True, help="licence of the work, e.g. CC-BY-3.0")
    p.add_argument("--attribution", default="", help="attribution shown with the player")
    p.add_argument("--description", default="", help="catalog description")
    p.add_argument("--not-before", help="UTC date or date-time the title may first be shown")
    p.add_argument("--not-after", help="UTC date or date-time from which it may no longer be")
    p.add_argument("--flight-only", action="store_true", help="show only in FLIGHT mode")
    p.add_argument("--segment-seconds", type=int, default=4, help="HLS segment length, 4..6 s")
    p.add_argument("--renditions", type=int, default=2, help="renditions of the ladder (>= 2)")
    p.add_argument("--segment-type", choices=["mpegts", "fmp4"], default="mpegts",
                   help="HLS segments: MPEG-TS (.ts) or fMP4 (.m4s)")
    p.add_argument("--audio", action="append", metavar="LANG=FILE[#N]",
                   help="another soundtrack (repeatable): audio stream N (default 0) of FILE; "
                        "the source's own soundtrack is in the first --lang")
    p.add_argument("--audio-description", action="append", metavar="LANG=FILE[#N]",
                   help="an audio description track (narration of what is on screen)")
    p.add_argument("--subtitles", action="append", metavar="LANG=FILE",
                   help="subtitles (repeatable), WebVTT or SubRip")
    p.add_argument("--captions", action="append", metavar="LANG=FILE",
                   help="closed captions with sound descriptions (repeatable), WebVTT or SubRip")
    p.add_argument("--localized", action="append", metavar="LANG:FIELD=TEXT",
                   help="the title, description or rating in another language, e.g. "
                        "fr:title='Le Grand Lapin' (repeatable)")
    p.add_argument("--author", default="", help="book author (books only)")
    p.add_argument("--chapter-regex", default=r"^(CHAPTER|Chapter|BOOK|Book)\b",
                   help="a line matching it starts a chapter (books only)")
    p.add_argument("--force", action="store_true", help="replace a non-empty --out")
    p.set_defaults(fn=_package)
    p = sub.add_parser("check", help="check a package as the appliance does at install")
    p.add_argument("dir", type=Path, help="the package directory")
    p.set_defaults(fn=_check)
    args = ap.parse_args(argv)
    return int(args.fn(args))

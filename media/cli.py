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
from pathlib import Path
from typing import Any

from appliance.content.validate import check_package
from appliance.errors import PackageError

from .book import cover_svg, package_book
from .epub import package_epub
from .manifest_writer import write_manifest
from .tracks import TrackKind, parse_track
from .video import VideoError, package_video

__all__ = ["main"]


def _package(args: argparse.Namespace) -> int:
    src: Path = args.src
    kind = args.kind or ("book" if src.suffix.lower() in (".txt", ".text", ".epub") else "video")
    out: Path = args.out
    if out.exists() and any(out.iterdir()):
        if not args.force:
            print(f"media: {out} exists and is not empty (--force replaces it)", file=sys.stderr)
            return 2
        shutil.rmtree(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        fields: dict[str, Any] = {
            "id": args.id, "title": args.title, "kind": kind, "languages": args.lang or ["en"],
            "rating": args.rating, "licence": args.licence, "attribution": args.attribution,
            "description": args.description, "not_before": args.not_before,
            "not_after": args.not_after, "flight_only": args.flight_only}
        if kind == "video":
            kinds: tuple[tuple[TrackKind, list[str] | None], ...] = (
                ("audio", args.audio), ("description", args.audio_description),
                ("subtitles", args.subtitles), ("captions", args.captions))
            tracks = [parse_track(kind, spec) for kind, specs in kinds for spec in specs or ()]
            entry, poster, info = package_video(src, work, segment_s=args.segment_seconds,
                                                renditions=args.renditions,
                                                segment_type=args.segment_type, tracks=tracks,
                                                audio_language=(args.lang or ["en"])[0])
            fields |= {"entry": entry, "poster": poster, "duration_s": round(info.duration_s, 3)}
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
    except (VideoError, PackageError, OSError, ValueError) as e:  # EpubError is a ValueError
        shutil.rmtree(work, ignore_errors=True)
        print(f"media: {e}", file=sys.stderr)
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
    ap = argparse.ArgumentParser(prog="media", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("package", help="package a video or a text")
    p.add_argument("src", type=Path)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--id", required=True, help="content id: a-z, 0-9 and '-'")
    p.add_argument("--title", required=True)
    p.add_argument("--kind", choices=["video", "book"])
    p.add_argument("--lang", action="append", help="language tag (repeatable; default en)")
    p.add_argument("--rating", default="NR")
    p.add_argument("--licence", required=True)
    p.add_argument("--attribution", default="")
    p.add_argument("--description", default="")
    p.add_argument("--not-before", help="UTC date or date-time the title may first be shown")
    p.add_argument("--not-after", help="UTC date or date-time from which it may no longer be")
    p.add_argument("--flight-only", action="store_true", help="show only in FLIGHT mode")
    p.add_argument("--segment-seconds", type=int, default=4)
    p.add_argument("--renditions", type=int, default=2)
    p.add_argument("--segment-type", choices=["mpegts", "fmp4"], default="mpegts")
    p.add_argument("--audio", action="append", metavar="LANG=FILE[#N]",
                   help="another soundtrack (repeatable): audio stream N (default 0) of FILE; "
                        "the source's own soundtrack is in the first --lang")
    p.add_argument("--audio-description", action="append", metavar="LANG=FILE[#N]",
                   help="an audio description track (narration of what is on screen)")
    p.add_argument("--subtitles", action="append", metavar="LANG=FILE",
                   help="subtitles (repeatable), WebVTT or SubRip")
    p.add_argument("--captions", action="append", metavar="LANG=FILE",
                   help="closed captions with sound descriptions (repeatable), WebVTT or SubRip")
    p.add_argument("--author", default="")
    p.add_argument("--chapter-regex", default=r"^(CHAPTER|Chapter|BOOK|Book)\b")
    p.add_argument("--force", action="store_true")
    p.set_defaults(fn=_package)
    p = sub.add_parser("check", help="check a package as the appliance does at install")
    p.add_argument("dir", type=Path)
    p.set_defaults(fn=_check)
    args = ap.parse_args(argv)
    return int(args.fn(args))

"""Every bad input of the issue is refused with a clear reason; v1 keeps serving; nothing staged."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import zstandard

from appliance.errors import BundleRefused
from appliance.intake.bundle import METADATA, PAYLOAD

from .helpers import KEYS, World, chunks, make_bundle, now, resign, run


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    w = World(tmp_path)
    run(w.push(make_bundle(tmp_path, 1, {"news": "old news"}, KEYS[:2])))
    assert w.served() == {"news": "<html><body>old news</body></html>"}
    yield w
    w.close()


def refused(w: World, bundle: Path, match: str) -> None:
    with pytest.raises(BundleRefused, match=match):
        run(w.push(bundle))
    assert w.served() == {"news": "<html><body>old news</body></html>"}  # the old one serves
    assert not list((w.tmp / "intake" / "staged").iterdir())  # nothing half-staged
    assert not list((w.tmp / "intake" / "unpack").iterdir())
    assert w.service.installed()["content"]["version"] == 1
    assert w.journal()[-1]["data"]["action"] == "refused"


def signed(bundle: Path) -> dict[str, Any]:
    return dict(json.loads((bundle / METADATA).read_bytes())["signed"])


def payload(entries: list[tuple[tarfile.TarInfo, bytes | None]], size_in_frame: bool = False) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for info, data in entries:
            tf.addfile(info, io.BytesIO(data) if data is not None else None)
    if size_in_frame:
        return zstandard.ZstdCompressor().compress(raw.getvalue())
    out = io.BytesIO()
    with zstandard.ZstdCompressor().stream_writer(out, closefd=False) as zw:
        zw.write(raw.getvalue())
    return out.getvalue()


def member(name: str, data: bytes = b"", kind: bytes = tarfile.REGTYPE, link: str = "") -> tuple[
        tarfile.TarInfo, bytes | None]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = link
    info.size = len(data) if kind == tarfile.REGTYPE else 0
    return info, data if kind == tarfile.REGTYPE else None


def with_payload(bundle: Path, data: bytes, files: dict[str, Any] | None = None) -> None:
    """Replace the payload; re-sign consistent metadata (a signer fooled into signing it)."""
    (bundle / PAYLOAD).write_bytes(data)
    s = signed(bundle)
    s["payload"] = {"length": len(data), "sha256": hashlib.sha256(data).hexdigest(),
                    "compression": "zstd"}
    if files is not None:
        s["files"] = files
    resign(bundle, s, KEYS[:2])


def fmeta(data: bytes) -> dict[str, Any]:
    return {"length": len(data), "hashes": {"sha256": hashlib.sha256(data).hexdigest()}}


def test_bad_signature(world: World) -> None:
    b = make_bundle(world.tmp, 2, {"news": "new"}, KEYS[:2])
    env = json.loads((b / METADATA).read_bytes())
    env["signed"]["name"] = "tampered"
    (b / METADATA).write_text(json.dumps(env))
    refused(world, b, "bad signature")


def test_below_threshold(world: World) -> None:
    refused(world, make_bundle(world.tmp, 2, {"news": "new"}, KEYS[:1]), "below threshold: 1 valid")


def test_duplicate_signatures_count_once(world: World) -> None:
    b = make_bundle(world.tmp, 2, {"news": "new"}, KEYS[:1])
    env = json.loads((b / METADATA).read_bytes())
    env["signatures"] *= 2
    (b / METADATA).write_text(json.dumps(env))
    refused(world, b, "below threshold")


def test_unknown_key(world: World) -> None:
    refused(world, make_bundle(world.tmp, 2, {"news": "new"}, [KEYS[0], KEYS[1], KEYS[3]]),
            "unknown key")


def test_version_equal_and_lower(world: World) -> None:
    refused(world, make_bundle(world.tmp, 1, {"news": "other"}, KEYS[:2], tag="b"),
            "replay of an already installed bundle: version 1")
    run(world.push(make_bundle(world.tmp, 3, {"news": "v3"}, KEYS[:2])))
    with pytest.raises(BundleRefused, match="rollback: version 2 is not above"):
        run(world.push(make_bundle(world.tmp, 2, {"news": "v2"}, KEYS[:2])))
    assert world.served() == {"news": "<html><body>v3</body></html>"}


def test_replay_of_old_valid_bundle(world: World) -> None:
    old = world.tmp / "b-content-1.bundle"  # the very bundle installed by the fixture
    run(world.push(make_bundle(world.tmp, 2, {"news": "v2"}, KEYS[:2])))
    with pytest.raises(BundleRefused, match="rollback: version 1"):
        run(world.push(old))
    assert world.served() == {"news": "<html><body>v2</body></html>"}


def test_bus_time_set_back_cannot_admit_an_expired_bundle(world: World) -> None:
    # The avionics UTC says 20 days ago; the security clock never goes below the local clock.
    world.utc = (now() - 20 * 86400, "avionics")
    refused(world, make_bundle(world.tmp, 2, {"news": "n"}, KEYS[:2], expires_days=1,
                               issued=now() - 3 * 86400), "expired: .* local clock time is")


def test_bus_time_ahead_does_not_lock_intake_out(world: World) -> None:
    world.utc = (now() + 400 * 86400, "avionics")
    run(world.push(make_bundle(world.tmp, 2, {"news": "v2"}, KEYS[:2])))
    assert world.service.installed()["content"]["version"] == 2


def test_expired_by_newest_signed_timestamp(world: World) -> None:
    # The local clock reset to 1970 (a flat RTC): the floor is the newest time seen (the
    # fixture's bundle was issued and admitted now).
    world.wall = 0.0
    refused(world, make_bundle(world.tmp, 2, {"news": "n"}, KEYS[:2], expires_days=1,
                               issued=now() - 3 * 86400),
            r"expired: .* time floor \(newest signed timestamp seen\) time is")


def test_time_floor_never_goes_back(world: World) -> None:
    floor = world.service.records.time_floor()
    assert floor is not None and floor >= now() - 60  # the fixture's admission raised it
    world.wall = now() - 10 * 86400  # the local clock set back 10 days
    assert world.service.clock()[0] == floor
    refused(world, make_bundle(world.tmp, 2, {"news": "n"}, KEYS[:2], expires_days=30,
                               issued=now() - 35 * 86400), "expired: ")
    assert world.service.records.time_floor() == floor


def test_file_length_differs(world: World) -> None:
    b = make_bundle(world.tmp, 2, {"news": "new"}, KEYS[:2])
    s = signed(b)
    s["files"]["news/book/index.html"]["length"] += 1
    resign(b, s, KEYS[:2])
    refused(world, b, r"news/book/index.html: (\d+) bytes, the manifest says \d+")


def test_file_hash_differs(world: World) -> None:
    b = make_bundle(world.tmp, 2, {"news": "new"}, KEYS[:2])
    s = signed(b)
    s["files"]["news/book/index.html"]["hashes"]["sha256"] = "0" * 64
    resign(b, s, KEYS[:2])
    refused(world, b, "SHA-256 differs from the manifest")


def test_altered_payload(world: World) -> None:
    b = make_bundle(world.tmp, 2, {"news": "new"}, KEYS[:2])
    data = bytearray((b / PAYLOAD).read_bytes())
    data[-5] ^= 0xFF
    (b / PAYLOAD).write_bytes(bytes(data))
    refused(world, b, "payload SHA-256 differs")


def test_truncated_upload(world: World) -> None:
    b = make_bundle(world.tmp, 2, {"news": "new"}, KEYS[:2])
    run(world.ensure_started())
    st = run(world.service.begin(json.loads((b / METADATA).read_bytes())))
    data = (b / PAYLOAD).read_bytes()
    run(world.service.write(st["id"], 0, chunks(data[: len(data) // 2])))
    with pytest.raises(BundleRefused, match=f"truncated upload: {len(data) // 2} of {len(data)}"):
        run(world.service.finalize(st["id"]))
    assert world.served() == {"news": "<html><body>old news</body></html>"}


def test_extra_file(world: World) -> None:
    b = make_bundle(world.tmp, 2, {"news": "new"}, KEYS[:2])
    files = signed(b)["files"]
    entries = [member(n, (world.tmp / "src-content-2" / n).read_bytes()) for n in sorted(files)]
    entries.append(member("news/book/evil.js", b"alert(1)"))
    with_payload(b, payload(entries))
    refused(world, b, "news/book/evil.js: extra file not in the manifest")


@pytest.mark.parametrize("bad,reason", [("../etc/x", "'..' is not allowed"),
                                        ("/etc/passwd", "absolute paths are not allowed"),
                                        ("news/../../x", "'..' is not allowed"),
                                        ("news/book", "is both a file and a directory"),
                                        ("news/book/index.html/x", "both a file and a directory"),
                                        ("NEWS/package.json", "equal but for case")])
def test_bad_paths_in_manifest(world: World, bad: str, reason: str) -> None:
    b = make_bundle(world.tmp, 2, {"news": "new"}, KEYS[:2])
    s = signed(b)
    s["files"][bad] = fmeta(b"x")
    resign(b, s, KEYS[:2])
    refused(world, b, reason)
    assert not list((world.tmp / "intake" / "uploads").iterdir())  # refused before any byte


@pytest.mark.parametrize("entry,reason", [
    (member("../x", b"x"), "archive member: path '../x'"),
    (member("/abs", b"x"), "absolute paths are not allowed"),
    (member("news/link", kind=tarfile.SYMTYPE, link="/etc/passwd"), "a symbolic link is not allowed"),
    (member("news/hard", kind=tarfile.LNKTYPE, link="news/package.json"), "a hard link"),
    (member("news/dev", kind=tarfile.CHRTYPE), "a device file is not allowed"),
    (member("news/fifo", kind=tarfile.FIFOTYPE), "a FIFO is not allowed"),
])
def test_bad_members_in_archive(world: World, entry: tuple[tarfile.TarInfo, bytes | None],
                                reason: str) -> None:
    b = make_bundle(world.tmp, 2, {"news": "new"}, KEYS[:2])
    with_payload(b, payload([entry]))
    refused(world, b, reason)


def test_larger_than_free_space(world: World) -> None:
    world.free = 1000
    refused(world, make_bundle(world.tmp, 2, {"news": "new" * 1000}, KEYS[:2]),
            "larger than the free space: needs")
    assert not list((world.tmp / "intake" / "uploads").iterdir())  # checked before writing


def test_too_large_for_the_limit(world: World) -> None:
    world.service = world.make_service()
    world.started = False
    object.__setattr__(world.service.cfg, "max_bundle_bytes", 10)
    refused(world, make_bundle(world.tmp, 2, {"news": "new"}, KEYS[:2]), "too large")


def test_decompression_bomb_announced(world: World) -> None:
    b = make_bundle(world.tmp, 2, {"news": "new"}, KEYS[:2])
    big = b"\0" * (20 << 20)
    files = {"news/big.bin": {"length": 10, "hashes": {"sha256": "0" * 64}}}
    with_payload(b, payload([member("news/big.bin", big)], size_in_frame=True), files)
    refused(world, b, "decompression bomb: the payload announces")


def test_decompression_bomb_streamed(world: World) -> None:
    b = make_bundle(world.tmp, 2, {"news": "new"}, KEYS[:2])
    big = b"\0" * (20 << 20)
    files = {"news/a.bin": fmeta(b"x" * 10)}
    entries = [member("news/a.bin", b"x" * 10), member("news/zzz", big)]
    with_payload(b, payload(entries), files)
    # Either guard may fire first: the cap on the stream, or the extra member's name.
    refused(world, b, "decompression bomb|extra file")


def test_decompression_bomb_declared(world: World) -> None:
    b = make_bundle(world.tmp, 2, {"news": "new"}, KEYS[:2])
    s = signed(b)
    s["files"]["news/huge.bin"] = {"length": 1 << 32, "hashes": {"sha256": "0" * 64}}
    resign(b, s, KEYS[:2])
    refused(world, b, "decompression bomb: the manifest declares")


def test_mix_and_match(world: World) -> None:
    a = make_bundle(world.tmp, 2, {"news": "A"}, KEYS[:2], tag="a")
    b = make_bundle(world.tmp, 2, {"news": "B"}, KEYS[:2], tag="b")
    assert (a / PAYLOAD).stat().st_size == (b / PAYLOAD).stat().st_size
    (a / PAYLOAD).write_bytes((b / PAYLOAD).read_bytes())  # A's signed metadata, B's files
    refused(world, a, "payload SHA-256 differs .* another bundle")
    c = make_bundle(world.tmp, 3, {"news": "C", "extra": "more files"}, KEYS[:2], tag="c")
    (a / PAYLOAD).write_bytes((c / PAYLOAD).read_bytes())  # longer: refused while uploading
    refused(world, a, "more bytes than the signed payload length")


def test_good_bundle_is_journaled_and_queued(world: World) -> None:
    run(world.push(make_bundle(world.tmp, 2, {"news": "new", "mag": "m"}, KEYS[1:3])))
    assert world.served() == {"news": "<html><body>new</body></html>",
                              "mag": "<html><body>m</body></html>"}
    actions = [r["data"]["action"] for r in world.journal()]
    assert actions[-4:] == ["begin", "received", "staged", "activated"]
    from sqlalchemy import select

    from appliance.store.models import outbox
    with world.reader.connect() as c:
        rows = c.execute(select(outbox.c.payload).where(outbox.c.stream == "intake")).scalars().all()
    last = rows[-1]
    assert last["kind"] == "intake" and last["utc"].endswith("+00:00")  # the one payload shape
    data = last["data"]
    assert data["action"] == "activated" and data["version"] == 2 and len(data["keyids"]) == 2
    assert world.service.installed()["content"]["detail"]["titles"] == ["mag", "news"]

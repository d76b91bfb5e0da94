"""Shared helpers for the intake tests: a journal DB, keys, book packages, bundles, a service."""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from appliance.content.store import ContentStore
from appliance.daemon.build import content_activator
from appliance.intake.bundle import METADATA, PAYLOAD, Envelope, Trust, load_envelope, sign
from appliance.intake.hangar import build_bundle
from appliance.intake.service import IntakeConfig, IntakeService
from appliance.modes.policy import Mode, PolicyTable
from appliance.store.engine import make_engine
from appliance.store.migrate import upgrade
from appliance.store.writer import Writer

KEYS = [Ed25519PrivateKey.from_private_bytes(bytes([i + 1]) * 32) for i in range(4)]


def pub_hex(k: Ed25519PrivateKey) -> str:
    return k.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw).hex()


#: content: keys 0,1,2 pinned, threshold 2; software: key 0, threshold 1. Key 3 is never pinned.
TRUST = Trust.from_hex({"content": ([pub_hex(k) for k in KEYS[:3]], 2),
                        "software": ([pub_hex(KEYS[0])], 1)})


def make_book(root: Path, pid: str, text: str) -> Path:
    """A minimal valid book package directory ``root/pid``."""
    d = root / pid
    (d / "book").mkdir(parents=True)
    body = f"<html><body>{text}</body></html>".encode()
    (d / "book" / "index.html").write_bytes(body)
    manifest = {"format": 1, "id": pid, "title": pid.title(), "kind": "book", "languages": ["en"],
                "licence": "CC0", "entry": "book/index.html",
                "files": {"book/index.html": {"size": len(body),
                                              "sha256": hashlib.sha256(body).hexdigest()}}}
    (d / "package.json").write_text(json.dumps(manifest))
    return d


def make_bundle(tmp: Path, version: int, texts: dict[str, str], keys: list[Ed25519PrivateKey],
                kind: str = "content", expires_days: float = 30.0, issued: float | None = None,
                tag: str = "") -> Path:
    src = tmp / f"src-{kind}-{version}{tag}"
    if kind == "content":
        pkgs = [make_book(src, pid, t) for pid, t in texts.items()]
    else:
        src.mkdir(parents=True)
        for name, t in texts.items():
            (src / name).write_text(t)
        pkgs = [src]
    out = tmp / f"b-{kind}-{version}{tag}.bundle"
    build_bundle(kind, f"{kind}-v{version}", version, pkgs, out, expires_days, issued)
    env = load_envelope(out / METADATA)
    for k in keys:
        env = sign(env, k)
    (out / METADATA).write_bytes(env.to_json())
    return out


def resign(bundle: Path, signed: dict[str, Any], keys: list[Ed25519PrivateKey]) -> None:
    """Replace the signed part (a 'buggy signer') and sign it with ``keys``."""
    env = Envelope(signed=signed, signatures=[])
    for k in keys:
        env = sign(env, k)
    (bundle / METADATA).write_bytes(env.to_json())


async def chunks(data: bytes, size: int = 65536) -> AsyncIterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i:i + size]


@dataclass
class World:
    """A journal DB, a content store and an intake service whose mode the test sets."""

    tmp: Path
    mode: Mode = Mode.GROUND
    utc: tuple[float, str] = (0.0, "local")
    quiet_reason: str | None = None
    free: int = 1 << 40
    #: The service's local wall clock (epoch s); None: the real one.
    wall: float | None = None
    writer: Writer = field(init=False)
    service: IntakeService = field(init=False)
    store: ContentStore = field(init=False)

    def __post_init__(self) -> None:
        db = self.tmp / "journal.db"
        engine = make_engine(db)
        upgrade(engine, db)
        self.writer = Writer(engine)
        self.writer.start()
        self.reader = make_engine(db, readonly=True)
        self.store = ContentStore(self.tmp / "content", self.writer, self.reader)
        self.store.prepare()
        self.service = self.make_service()

    def make_service(self) -> IntakeService:
        return IntakeService(
            IntakeConfig(self.tmp / "intake", "F-TEST", chunk_bytes=65536, free_margin_bytes=0,
                         quiet_wait_s=0.3, quiet_poll_s=0.05),
            TRUST, self.writer, self.reader, lambda: self.mode, PolicyTable.default(),
            lambda: self.utc, {"content": content_activator(self.store)},
            quiet=lambda: self.quiet_reason, free_space=lambda p: self.free,
            wall=lambda: time.time() if self.wall is None else self.wall)

    started: bool = False

    async def ensure_started(self) -> None:
        if not self.started:
            await self.service.start()
            self.started = True

    def close(self) -> None:
        self.writer.stop()

    async def push(self, bundle: Path, activate: bool = True) -> dict[str, Any]:
        await self.ensure_started()
        env = json.loads((bundle / METADATA).read_bytes())
        st = await self.service.begin(env)
        data = (bundle / PAYLOAD).read_bytes()
        st = await self.service.write(st["id"], st["received"], chunks(data[st["received"]:]))
        st = await self.service.finalize(st["id"])
        if activate:
            await self.service.activate(st["id"])
        return self.service.status(st["id"])

    def journal(self) -> list[dict[str, Any]]:
        from sqlalchemy import select

        from appliance.store.models import journal
        with self.reader.connect() as c:
            return [dict(r) for r in c.execute(select(journal).where(journal.c.kind == "intake")
                                               .order_by(journal.c.id)).mappings()]

    def served(self) -> dict[str, str]:
        """Title id -> text of its index page, as the content store serves it now."""
        return {i.id: (i.path / "book" / "index.html").read_text() for i in self.store.installed()}


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def now() -> float:
    return time.time()

"""Ground → aircraft: small signed documents, versioned per aircraft, acknowledged.

A document is a JSON object of one ``kind`` (``config``: fleet configuration such as satcom
budgets and stream priorities; ``notice``: a message for the crew) published for one aircraft or
for the whole fleet. Each aircraft has its own version sequence per kind (1, 2, ...); a newer
version supersedes the older ones. It travels on the aircraft's own connection: the answer to
``GET /v1/watermarks`` (which the uplink asks at every session start and on its idle probe)
carries the latest document of each kind that the aircraft has not yet applied::

    "downlink": [{"aircraft": "F-GKXA", "kind": "config", "version": 3, "issued": 1732170000.0,
                  "body": {...}, "key_id": "…", "signature": "<base64 Ed25519>"}]

The ground signs each document with its own Ed25519 key (``downlink_key_file``) over
:func:`document_message` (the canonical JSON of aircraft, kind, version, issued and body), so a
document cannot be altered or replayed to another aircraft. The aircraft answers with
``POST /v1/downlink/ack`` ``{"kind", "version", "status": "applied"|"deferred"|"refused",
"mode", "detail"}``; ``downlink_state`` keeps, per aircraft and kind, the applied version, when
and in which mode, and the last status: :meth:`Downlink.status` (the fleet view, the CLI).

Tables: ``downlink_docs`` (every version published) and ``downlink_state``.
"""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import Engine, func, insert, select, update

from .db import aircraft_keys, aircraft_state, downlink_docs, downlink_state
from .identity import key_id

__all__ = ["KINDS", "Downlink", "document_message", "load_ground_key"]

KINDS = ("config", "notice")
ACK_STATUSES = ("applied", "deferred", "refused")
MAX_DOC_BYTES = 16384


def document_message(aircraft: str, kind: str, version: int, issued: float, body: Any) -> bytes:
    """The bytes the ground signs for one document (canonical JSON, sorted keys)."""
    return json.dumps({"aircraft": aircraft, "kind": kind, "version": version, "issued": issued,
                       "body": body}, sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False).encode()


def load_ground_key(path: str | Path) -> Ed25519PrivateKey:
    """The ground's signing key (PEM, PKCS#8, unencrypted). Raises ValueError or OSError."""
    key = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"{path}: not an Ed25519 private key")
    return key


def public_b64(key: Ed25519PrivateKey) -> str:
    """The ground key's public half, base64 of the raw 32 bytes (for the aircraft settings)."""
    return base64.b64encode(key.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw)).decode()


class Downlink:
    """Publish documents, hand the pending ones to an aircraft, take its acknowledgements."""

    def __init__(self, engine: Engine, key: Ed25519PrivateKey | None) -> None:
        """Over ``engine``; ``key`` signs what is published (None: publishing is refused)."""
        self.engine = engine
        self.key = key

    def fleet(self) -> list[str]:
        """Every aircraft the ground knows: registered keys or batches received."""
        with self.engine.connect() as conn:
            a = {r[0] for r in conn.execute(select(aircraft_keys.c.aircraft).distinct())}
            a |= {r[0] for r in conn.execute(select(aircraft_state.c.aircraft))}
        return sorted(a)

    def publish(self, kind: str, body: Any, aircraft: list[str] | None = None,
                now: float | None = None) -> dict[str, int]:
        """Publish ``body`` as the next version of ``kind`` for each aircraft (None: the fleet).

        Returns aircraft -> its new version. Raises ValueError for an unknown kind, a body that
        is not a JSON object or over 16 KiB, or no signing key.
        """
        if kind not in KINDS:
            raise ValueError(f"kind {kind!r}: one of {', '.join(KINDS)}")
        if not isinstance(body, dict):
            raise ValueError("a document body is a JSON object")
        if len(json.dumps(body)) > MAX_DOC_BYTES:
            raise ValueError(f"document over {MAX_DOC_BYTES} bytes: the downlink is for small ones")
        if self.key is None:
            raise ValueError("no downlink_key_file configured: documents cannot be signed")
        now = float(time.time() if now is None else now)
        targets = aircraft if aircraft is not None else self.fleet()
        kid = key_id(base64.b64decode(public_b64(self.key)))
        out: dict[str, int] = {}
        with self.engine.begin() as conn:
            for ac in targets:
                v = int(conn.execute(select(func.coalesce(func.max(downlink_docs.c.version), 0))
                                     .where(downlink_docs.c.aircraft == ac,
                                            downlink_docs.c.kind == kind)).scalar_one()) + 1
                sig = self.key.sign(document_message(ac, kind, v, now, body))
                conn.execute(insert(downlink_docs).values(
                    aircraft=ac, kind=kind, version=v, issued=now, body=body, key_id=kid,
                    signature=base64.b64encode(sig).decode()))
                out[ac] = v
        return out

    def pending(self, aircraft: str) -> list[dict[str, Any]]:
        """The latest document of each kind that ``aircraft`` has not applied yet."""
        with self.engine.connect() as conn:
            applied = dict(conn.execute(select(downlink_state.c.kind,
                                               downlink_state.c.applied_version)
                                        .where(downlink_state.c.aircraft == aircraft)).all())
            tops = conn.execute(select(downlink_docs.c.kind, func.max(downlink_docs.c.version))
                                .where(downlink_docs.c.aircraft == aircraft)
                                .group_by(downlink_docs.c.kind)).all()
            latest = [conn.execute(select(downlink_docs).where(
                downlink_docs.c.aircraft == aircraft, downlink_docs.c.kind == k,
                downlink_docs.c.version == v)).one()
                for k, v in tops if int(v) > int(applied.get(k) or 0)]
        return [{"aircraft": r.aircraft, "kind": r.kind, "version": int(r.version),
                 "issued": r.issued, "body": r.body, "key_id": r.key_id, "signature": r.signature}
                for r in latest]

    def ack(self, aircraft: str, ack: dict[str, Any], now: float | None = None) -> dict[str, Any]:
        """Record an aircraft's acknowledgement; returns its state for that kind.

        Raises ValueError for a malformed ack or a version never published for it.
        """
        kind, version, status = ack.get("kind"), ack.get("version"), ack.get("status")
        if kind not in KINDS or not isinstance(version, int) or status not in ACK_STATUSES:
            raise ValueError("an ack is {kind, version (int), status: applied|deferred|refused, "
                             "mode, detail}")
        mode, detail = str(ack.get("mode", ""))[:16], str(ack.get("detail", ""))[:500]
        now = time.time() if now is None else now
        with self.engine.begin() as conn:
            known = conn.execute(select(downlink_docs.c.version).where(
                downlink_docs.c.aircraft == aircraft, downlink_docs.c.kind == kind,
                downlink_docs.c.version == version)).first()
            if known is None:
                raise ValueError(f"{kind} version {version} was never published for {aircraft}")
            row = conn.execute(select(downlink_state).where(
                downlink_state.c.aircraft == aircraft, downlink_state.c.kind == kind)
                .with_for_update()).first()
            values: dict[str, Any] = {"status": status, "acked_version": version,
                                      "detail": detail, "updated": now}
            if status == "applied" and (row is None or (row.applied_version or 0) < version):
                values |= {"applied_version": version, "applied_at": now, "applied_mode": mode}
            if row is None:
                conn.execute(insert(downlink_state).values(aircraft=aircraft, kind=kind,
                                                           **values))
            else:
                conn.execute(update(downlink_state).where(
                    downlink_state.c.aircraft == aircraft, downlink_state.c.kind == kind)
                    .values(**values))
            out = conn.execute(select(downlink_state).where(
                downlink_state.c.aircraft == aircraft, downlink_state.c.kind == kind)).one()
        return _state_row(out)

    def status(self) -> dict[str, dict[str, dict[str, Any]]]:
        """Per aircraft, per kind: published and applied version, when, in which mode, status."""
        out: dict[str, dict[str, dict[str, Any]]] = {}
        with self.engine.connect() as conn:
            for r in conn.execute(select(downlink_docs.c.aircraft, downlink_docs.c.kind,
                                         func.max(downlink_docs.c.version).label("v"))
                                  .group_by(downlink_docs.c.aircraft, downlink_docs.c.kind)):
                out.setdefault(r.aircraft, {})[r.kind] = {
                    "published": int(r.v), "applied_version": 0, "applied_at": None,
                    "applied_mode": None, "status": None, "detail": ""}
            for s in conn.execute(select(downlink_state)):
                out.setdefault(s.aircraft, {}).setdefault(s.kind, {"published": 0}).update(
                    _state_row(s))
        return out


def _state_row(r: Any) -> dict[str, Any]:
    return {"applied_version": int(r.applied_version or 0), "applied_at": r.applied_at,
            "applied_mode": r.applied_mode, "status": r.status, "detail": r.detail or ""}

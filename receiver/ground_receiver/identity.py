r"""Aircraft identity: one Ed25519 key pair per aircraft, public keys registered on the ground.

Every request of an aircraft carries four headers and is verified against ``aircraft_keys``
(read on each request, so every stateless receiver sees a registration or a revocation at once)::

    X-Aircraft:  F-GKXA
    X-Key-Id:    9f86d081884c7d65                 (first 16 hex of sha256(raw public key))
    X-Timestamp: 1732170000.123                   (aircraft clock, epoch s)
    X-Signature: <base64 of the 64-byte Ed25519 signature of the message below>

The signed message (UTF-8, ``\\n``-separated)::

    cabin-sync-v1
    <METHOD>
    <path>                      e.g. /v1/batches
    <aircraft>
    <key id>
    <timestamp, as sent>
    <sha256 hex of the body>    (of the empty string for a GET)

So a signature covers one exact body (the batch) from one key. A captured request replayed is
harmless for a batch (batches are idempotent) and bounded for the reads by ``max_skew_s``.

Refusals (:class:`~ground_receiver.errors.AuthRefused`): ``unauthorized`` (headers missing or
malformed, bad signature, timestamp out of the window), ``unknown_aircraft`` (no key of that id
registered for that aircraft), ``key_revoked`` (the key was revoked, or its rotation grace ended).

Rotation (see the README): register the new public key with ``ground-receiver aircraft rotate``:
the old keys stay valid for ``--grace-s`` (default one day) and are revoked after; the aircraft
switches to the new private key whenever it is installed. Nothing is shared between the two keys.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy import Engine, insert, select, update

from .db import aircraft_keys
from .errors import AuthRefused

__all__ = ["HEADERS", "KeyInfo", "KeyRing", "key_id", "load_public_key", "signed_message"]

DOMAIN = "cabin-sync-v1"
HEADERS = ("x-aircraft", "x-key-id", "x-timestamp", "x-signature")


def signed_message(method: str, path: str, aircraft: str, kid: str, timestamp: str,
                   body: bytes) -> bytes:
    """The bytes an aircraft signs for one request (see the module doc)."""
    return "\n".join([DOMAIN, method.upper(), path, aircraft, kid, timestamp,
                      hashlib.sha256(body).hexdigest()]).encode()


def key_id(raw_public: bytes) -> str:
    """The key id of a raw 32-byte Ed25519 public key: first 16 hex digits of its SHA-256."""
    return hashlib.sha256(raw_public).hexdigest()[:16]


def load_public_key(text: str) -> bytes:
    """A public key given as PEM (SubjectPublicKeyInfo) or base64 of the raw 32 bytes.

    Returns the raw 32 bytes. Raises ValueError naming what is wrong.
    """
    text = text.strip()
    if text.startswith("-----BEGIN"):
        try:
            key = serialization.load_pem_public_key(text.encode())
        except ValueError as e:
            raise ValueError(f"not a PEM public key: {e}") from e
        if not isinstance(key, Ed25519PublicKey):
            raise ValueError(f"not an Ed25519 key but {type(key).__name__}")
        return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    try:
        raw = base64.b64decode(text, validate=True)
    except binascii.Error as e:
        raise ValueError(f"public key is neither PEM nor base64: {e}") from e
    if len(raw) != 32:
        raise ValueError(f"a raw Ed25519 public key has 32 bytes, not {len(raw)}")
    return raw


@dataclass(frozen=True)
class KeyInfo:
    """One registered key: state is ``active`` or ``revoked``; times epoch s."""

    aircraft: str
    key_id: str
    public_key: str  # base64 of the raw 32 bytes
    state: str
    created: float
    expires: float | None
    revoked: float | None


class KeyRing:
    """The ``aircraft_keys`` table: register, revoke, rotate, list, and verify requests."""

    def __init__(self, engine: Engine, max_skew_s: float = 86400.0) -> None:
        """Over ``engine`` (tables made by ``init_db``); ``max_skew_s`` the timestamp window."""
        self.engine = engine
        self.max_skew_s = max_skew_s

    def register(self, aircraft: str, public_key: str, now: float | None = None) -> str:
        """Register a public key (PEM or base64) for ``aircraft``; returns its key id.

        Registering a key that is already there (and not revoked) is a no-op. Raises ValueError
        for a bad key or a key that was revoked (a revoked key is never taken back).
        """
        raw = load_public_key(public_key)
        kid = key_id(raw)
        now = time.time() if now is None else now
        with self.engine.begin() as conn:
            row = conn.execute(select(aircraft_keys).where(aircraft_keys.c.key_id == kid)).first()
            if row is not None:
                if row.aircraft != aircraft:
                    raise ValueError(f"key {kid} is registered for {row.aircraft}")
                if row.revoked is not None:
                    raise ValueError(f"key {kid} of {aircraft} was revoked: register a new key")
                return kid
            conn.execute(insert(aircraft_keys).values(
                aircraft=aircraft, key_id=kid, public_key=base64.b64encode(raw).decode(),
                created=now, expires=None, revoked=None))
        return kid

    def revoke(self, aircraft: str, kid: str | None = None, now: float | None = None) -> int:
        """Revoke one key of ``aircraft`` (or all with ``kid`` None) now; returns how many."""
        now = time.time() if now is None else now
        cond = [aircraft_keys.c.aircraft == aircraft, aircraft_keys.c.revoked.is_(None)]
        if kid is not None:
            cond.append(aircraft_keys.c.key_id == kid)
        with self.engine.begin() as conn:
            return int(conn.execute(update(aircraft_keys).where(*cond).values(revoked=now))
                       .rowcount)

    def rotate(self, aircraft: str, public_key: str, grace_s: float = 86400.0,
               now: float | None = None) -> str:
        """Register a new key; the aircraft's other live keys expire ``grace_s`` from now.

        Returns the new key id. During the grace both keys are taken, so the aircraft may
        switch to the new private key at any moment within it.
        """
        now = time.time() if now is None else now
        kid = self.register(aircraft, public_key, now)
        with self.engine.begin() as conn:
            conn.execute(update(aircraft_keys).where(
                aircraft_keys.c.aircraft == aircraft, aircraft_keys.c.key_id != kid,
                aircraft_keys.c.revoked.is_(None)).values(expires=now + grace_s))
        return kid

    def keys(self, aircraft: str | None = None, now: float | None = None) -> list[KeyInfo]:
        """Every registered key (of ``aircraft``, or all), oldest first."""
        now = time.time() if now is None else now
        q = select(aircraft_keys).order_by(aircraft_keys.c.aircraft, aircraft_keys.c.created)
        if aircraft is not None:
            q = q.where(aircraft_keys.c.aircraft == aircraft)
        with self.engine.connect() as conn:
            rows = conn.execute(q).all()
        return [KeyInfo(r.aircraft, r.key_id, r.public_key, _state(r, now), r.created, r.expires,
                        r.revoked) for r in rows]

    def verify(self, method: str, path: str, headers: Mapping[str, str], body: bytes | None,
               now: float | None = None, seen: dict[tuple[str, str], Any] | None = None) -> str:
        """The aircraft that signed this request; raises AuthRefused (see the module doc).

        ``body`` None checks all but the signature itself (before a large body is read).
        ``seen``: the key rows this request already read (the check before the body and the
        one with it share one database read); filled here.
        """
        vals = {h: headers.get(h) for h in HEADERS}
        missing = [h for h, v in vals.items() if not v]
        if missing:
            raise AuthRefused("unauthorized", "a signed request is required: missing "
                              + ", ".join(h.title() for h in missing))
        aircraft, kid, ts, sig_b64 = (str(vals[h]) for h in HEADERS)
        now = time.time() if now is None else now
        try:
            skew = abs(float(ts) - now)
        except ValueError:
            raise AuthRefused("unauthorized", f"X-Timestamp {ts[:40]!r} is not a number") from None
        if not skew <= self.max_skew_s:
            raise AuthRefused("unauthorized", f"X-Timestamp is {skew:.0f} s off the ground clock "
                              f"(at most {self.max_skew_s:.0f} s)")
        row = None if seen is None else seen.get((aircraft, kid))
        if row is None:
            with self.engine.connect() as conn:
                row = conn.execute(select(aircraft_keys).where(
                    aircraft_keys.c.aircraft == aircraft, aircraft_keys.c.key_id == kid)).first()
            if seen is not None and row is not None:
                seen[(aircraft, kid)] = row
        if row is None:
            raise AuthRefused("unknown_aircraft",
                              f"no key {kid[:16]!r} registered for aircraft {aircraft[:64]!r}")
        state = _state(row, now)
        if state != "active":
            raise AuthRefused("key_revoked", f"key {kid} of {aircraft} was {state} at "
                              f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(_end(row)))}")
        if body is None:
            return aircraft
        try:
            sig = base64.b64decode(sig_b64, validate=True)
            Ed25519PublicKey.from_public_bytes(base64.b64decode(row.public_key)).verify(
                sig, signed_message(method, path, aircraft, kid, ts, body))
        except (binascii.Error, ValueError, InvalidSignature):
            raise AuthRefused("unauthorized",
                              f"signature of {aircraft} key {kid} does not verify") from None
        return aircraft


def _end(row: Any) -> float:
    ends = [t for t in (row.revoked, row.expires) if t is not None]
    return float(min(ends)) if ends else 0.0


def _state(row: Any, now: float) -> str:
    if row.revoked is not None and row.revoked <= now:
        return "revoked"
    if row.expires is not None and row.expires <= now:
        return "expired"
    return "active"

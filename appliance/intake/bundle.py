"""The bundle format: signed metadata (TUF-like envelope) plus a zstd-compressed tar payload.

A bundle on the hangar station is a directory ``NAME.bundle/`` holding ``metadata.json`` and
``payload.tar.zst``. ``metadata.json`` is a TUF-style envelope::

    {"signed": {"_type": "bundle", "spec_version": "1.0", "name": "films-2026-11",
                "kind": "content" | "menu" | "software" | "keys", "version": 7,  # only goes up
                "issued": "2026-11-20T10:00:00Z", "expires": "2026-12-20T10:00:00Z",
                "payload": {"length": 123456, "sha256": "<hex>", "compression": "zstd"},
                "files": {"pkg-a/package.json": {"length": 812, "hashes": {"sha256": "<hex>"}}, ...}},
     "signatures": [{"keyid": "<hex sha256 of the raw public key>", "sig": "<hex Ed25519>"}, ...]}

Signatures are Ed25519 over the canonical JSON of ``signed`` (:func:`canonical`: sorted keys, no
spaces, UTF-8). A key id is the SHA-256 (hex) of the 32-byte raw public key.

**Trust rules** (:func:`verify`), each refusal a :class:`~appliance.errors.BundleRefused` with the
reason: every signature must come from a key pinned for the bundle's kind (*unknown key*) and be
valid (*bad signature*); distinct valid keys must reach the kind's threshold (*below threshold*);
the version must be greater than the installed one of that kind (*rollback* / *replay*: an old
validly signed bundle has a version at most the installed one); the bundle must not be expired.

**Key rotation** (as TUF rotates its root). A ``keys`` bundle carries a new key set in its signed
part (``"keys": {"content": {"keys": [hex...], "threshold": n}, "software": ..., "keys": ...}``,
every kind) and a ``keys.json`` payload file with the same set, for people. It must be signed by
the threshold of the ``keys`` role now in force (*below threshold*) and by the threshold of the
new set's ``keys`` role (*below threshold of the new key set*: the new keys prove they are held);
its version (the key set's) must be above the installed one, so a replayed older key set is
refused. Once it is active, a signature by a key that the new set no longer pins is refused as
*retired key* (:attr:`Trust.retired`).

**The clock for expiry** (:func:`floor_clock`). Security decisions use a time that never goes
back, whatever the bus says: ``now = max(stored floor, local wall clock)``. The floor (persisted,
it only rises) is the newest signed ``issued`` time of any bundle admitted and the clock each
admission was judged by; since an admitted bundle was not expired by that clock, the floor never
passes a signed expiry (a local clock set far ahead cannot push it further than that). Avionics
(bus) UTC never enters: a card whose clock is set back cannot make an expired bundle valid, and
a card whose clock runs ahead cannot lock intake out.

**Paths** (:func:`colliding_paths`): a manifest whose paths collide on disk is malformed: ``x``
both a file and a directory (``x`` and ``x/y``), or two paths equal once Unicode-normalised
(NFC) and case-folded (they would overwrite each other on a case-insensitive filesystem).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ..errors import BundleRefused

__all__ = ["KINDS", "METADATA", "PAYLOAD", "BundleMeta", "Envelope", "FileMeta", "PayloadMeta",
           "RoleMeta", "SIGNED_AS", "Trust",
           "Verified", "canonical", "colliding_paths", "floor_clock", "keyid", "load_envelope",
           "parse_time", "safe_path", "sign", "verify"]

METADATA = "metadata.json"
PAYLOAD = "payload.tar.zst"
_SEGMENT = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.+-]*$")
_HEX64 = r"^[0-9a-f]{64}$"
Kind = Literal["content", "menu", "software", "keys"]
#: The kinds a key set must pin (a ``keys`` bundle gives all of them).
KINDS: tuple[str, ...] = ("content", "software", "keys")
#: Kinds signed by another kind's keys: a ``menu`` bundle (the onboard shop's menu, one
#: ``menu.json`` or ``menu.toml``) is content, signed by the content keys; its versions are its own.
SIGNED_AS: dict[str, str] = {"menu": "content"}


def safe_path(path: str) -> str | None:
    """The reason ``path`` is not a plain relative POSIX path inside the bundle, or None if it is."""
    if not path or len(path) > 255:
        return f"path {path!r}: empty or too long"
    if path.startswith("/") or re.match(r"^[A-Za-z]:", path):
        return f"path {path!r}: absolute paths are not allowed"
    parts = path.split("/")
    if ".." in parts:
        return f"path {path!r}: '..' is not allowed"
    if any(not _SEGMENT.match(p) for p in parts):
        return f"path {path!r}: only letters, digits and _.+- in path segments"
    return None


def colliding_paths(paths: Iterable[str]) -> str | None:
    """The reason two of ``paths`` would collide on disk, or None (see the module docstring)."""
    seen: dict[str, str] = {}
    for p in paths:
        key = unicodedata.normalize("NFC", p).casefold()
        if key in seen:
            return f"paths {seen[key]!r} and {p!r} collide (equal but for case or normalisation)"
        seen[key] = p
    for key, p in seen.items():
        parts = key.split("/")
        for i in range(1, len(parts)):
            if (parent := "/".join(parts[:i])) in seen:
                return f"path {seen[parent]!r} is both a file and a directory (of {p!r})"
    return None


def floor_clock(floor: float | None, wall: float) -> tuple[float, str]:
    """The clock for expiry: ``(max(floor, wall), its name)`` (epoch s; see the module docstring).

    ``floor`` is the stored time floor (None: none yet), ``wall`` the local wall clock.
    """
    if floor is not None and floor > wall:
        return floor, "time floor (newest signed timestamp seen)"
    return wall, "local clock"


def parse_time(text: str) -> float:
    """An ISO 8601 UTC time (``...Z`` or with an offset) as epoch seconds; ValueError if bad."""
    t = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    if t.tzinfo is None:
        raise ValueError(f"time {text!r} has no time zone")
    return t.timestamp()


class FileMeta(BaseModel):
    """One file of the payload: length (bytes) and hashes (``sha256`` hex)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    length: Annotated[int, Field(ge=0)]
    hashes: dict[Literal["sha256"], Annotated[str, Field(pattern=_HEX64)]]


class PayloadMeta(BaseModel):
    """The payload archive as uploaded: its length (bytes), SHA-256 and compression."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    length: Annotated[int, Field(gt=0)]
    sha256: Annotated[str, Field(pattern=_HEX64)]
    compression: Literal["zstd"] = "zstd"


class RoleMeta(BaseModel):
    """One role of a new key set: pinned Ed25519 public keys (hex, 32 bytes raw) and the threshold.

    ValidationError if a key is malformed or repeated, or the threshold exceeds the keys.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)
    keys: Annotated[list[Annotated[str, Field(pattern=_HEX64)]], Field(min_length=1)]
    threshold: Annotated[int, Field(ge=1)]

    @model_validator(mode="after")
    def _check(self) -> RoleMeta:
        if len(set(self.keys)) != len(self.keys):
            raise ValueError("a key is listed twice")
        if self.threshold > len(self.keys):
            raise ValueError(f"threshold {self.threshold} is above the {len(self.keys)} key(s) "
                             "given: nothing could ever be signed")
        for k in self.keys:
            Ed25519PublicKey.from_public_bytes(bytes.fromhex(k))
        return self


class BundleMeta(BaseModel):
    """The ``signed`` part; raises ValidationError on any bad or unknown field or unsafe path."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)
    type_: Literal["bundle"] = Field("bundle", alias="_type")
    spec_version: Literal["1.0"] = "1.0"
    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")]
    kind: Kind
    version: Annotated[int, Field(ge=1)]
    issued: str
    expires: str
    payload: PayloadMeta
    files: Annotated[dict[str, FileMeta], Field(min_length=1)]
    #: Only in a ``keys`` bundle: the new key set, every kind of :data:`KINDS`.
    keys: dict[Literal["content", "software", "keys"], RoleMeta] | None = None

    @field_validator("issued", "expires")
    @classmethod
    def _time(cls, v: str) -> str:
        parse_time(v)
        return v

    @model_validator(mode="after")
    def _check(self) -> BundleMeta:
        for p in self.files:
            if (reason := safe_path(p)) is not None:
                raise ValueError(reason)
        if (reason := colliding_paths(self.files)) is not None:
            raise ValueError(reason)
        if parse_time(self.expires) <= parse_time(self.issued):
            raise ValueError("expires is not after issued")
        if (self.kind == "keys") != (self.keys is not None):
            raise ValueError("a keys bundle (and only a keys bundle) carries the new key set 'keys'")
        if self.keys is not None and (missing := [k for k in KINDS if k not in self.keys]):
            raise ValueError(f"the new key set pins no keys for {', '.join(missing)}: every kind "
                             "must have its keys")
        return self

    def total_length(self) -> int:
        """Sum of the files' lengths (bytes), the unpacked size."""
        return sum(f.length for f in self.files.values())


class Signature(BaseModel):
    """One signature: key id and Ed25519 signature (hex)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    keyid: Annotated[str, Field(pattern=_HEX64)]
    sig: Annotated[str, Field(pattern=r"^[0-9a-f]{128}$")]


class Envelope(BaseModel):
    """``metadata.json``: the signed part as raw JSON (so its bytes are what was signed) and signatures."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    signed: dict[str, Any]
    signatures: list[Signature] = []

    def meta(self) -> BundleMeta:
        """The signed part parsed; BundleRefused with the reason if it is malformed."""
        try:
            return BundleMeta.model_validate(self.signed)
        except ValidationError as e:
            raise BundleRefused(f"malformed metadata: {_first_error(e)}") from e

    def bundle_id(self) -> str:
        """The bundle's identity: SHA-256 (hex) of the canonical signed part."""
        return hashlib.sha256(canonical(self.signed)).hexdigest()

    def to_json(self) -> bytes:
        """The envelope as indented JSON (what ``metadata.json`` holds)."""
        return json.dumps(self.model_dump(mode="json"), indent=1, sort_keys=True).encode()


def _first_error(e: ValidationError) -> str:
    err = e.errors()[0]
    where = ".".join(str(x) for x in err.get("loc", ()))
    return f"{where}: {err.get('msg')}" if where else str(err.get("msg"))


def canonical(obj: Mapping[str, Any]) -> bytes:
    """Canonical JSON bytes: sorted keys, no whitespace, UTF-8 (what is signed)."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def keyid(public: Ed25519PublicKey) -> str:
    """The key id: SHA-256 (hex) of the raw 32-byte public key."""
    return hashlib.sha256(public.public_bytes(Encoding.Raw, PublicFormat.Raw)).hexdigest()


def sign(envelope: Envelope, key: Ed25519PrivateKey) -> Envelope:
    """A copy of ``envelope`` with ``key``'s signature added (replacing an older one by that key)."""
    kid = keyid(key.public_key())
    sig = Signature(keyid=kid, sig=key.sign(canonical(envelope.signed)).hex())
    others = [s for s in envelope.signatures if s.keyid != kid]
    return Envelope(signed=envelope.signed, signatures=[*others, sig])


def load_envelope(raw: bytes | str | Path | Mapping[str, Any]) -> Envelope:
    """Parse ``metadata.json`` (bytes, text, a path or a parsed object); BundleRefused if malformed."""
    try:
        if isinstance(raw, Path):
            raw = raw.read_bytes()
        data = json.loads(raw) if isinstance(raw, bytes | str) else dict(raw)
        return Envelope.model_validate(data)
    except (OSError, ValueError, ValidationError) as e:
        msg = _first_error(e) if isinstance(e, ValidationError) else str(e)
        raise BundleRefused(f"malformed metadata: {msg}") from e


@dataclass(frozen=True, slots=True)
class Trust:
    """The pinned keys and threshold per kind: ``{kind: ({keyid: public key}, threshold)}``.

    ``version``: the key set's version (0: the keys pinned in the configuration; N: installed by
    the ``keys`` bundle of version N); ``retired``: key ids that earlier key sets pinned and this
    one does not (a signature by one is refused as *retired key*).
    """

    roles: Mapping[str, tuple[Mapping[str, Ed25519PublicKey], int]]
    version: int = 0
    retired: frozenset[str] = frozenset()

    @classmethod
    def from_hex(cls, roles: Mapping[str, tuple[list[str], int]], version: int = 0,
                 retired: Iterable[str] = ()) -> Trust:
        """From hex raw public keys; ValueError on a malformed key."""
        out: dict[str, tuple[dict[str, Ed25519PublicKey], int]] = {}
        for kind, (keys, threshold) in roles.items():
            pubs = [Ed25519PublicKey.from_public_bytes(bytes.fromhex(k)) for k in keys]
            out[kind] = ({keyid(p): p for p in pubs}, threshold)
        return cls(out, version, frozenset(retired))

    def keyids(self) -> set[str]:
        """Every key id pinned for any kind."""
        return {k for keys, _ in self.roles.values() for k in keys}


@dataclass(frozen=True, slots=True)
class Verified:
    """A bundle whose metadata passed: id, parsed metadata, signing key ids, the clock used."""

    bundle_id: str
    meta: BundleMeta
    keyids: tuple[str, ...]
    now: float | None
    clock: str


def verify(envelope: Envelope, trust: Trust, installed_version: int, now: float | None,
           clock: str) -> Verified:
    """Check signatures, threshold, version and expiry; BundleRefused with the reason if not.

    ``installed_version``: the highest version of this kind ever activated (0 for none). ``now``:
    epoch seconds of the security clock (:func:`floor_clock`) or None (expiry not judged, only
    ``issued < expires``); ``clock`` names it.
    """
    meta = envelope.meta()
    role = trust.roles.get(SIGNED_AS.get(meta.kind, meta.kind))
    if role is None or not role[0]:
        raise BundleRefused(f"no keys are pinned for {meta.kind} bundles: nothing can be accepted")
    keys, threshold = role
    new: tuple[dict[str, Ed25519PublicKey], int] | None = None
    if meta.keys is not None:  # a rotation: the new keys role may (and must) sign too
        r = meta.keys["keys"]
        pubs = [Ed25519PublicKey.from_public_bytes(bytes.fromhex(k)) for k in r.keys]
        new = ({keyid(p): p for p in pubs}, r.threshold)
    known = {**keys, **(new[0] if new else {})}
    message = canonical(envelope.signed)
    good: set[str] = set()
    for s in envelope.signatures:
        pub = known.get(s.keyid)
        if pub is None:
            if s.keyid in trust.retired:
                raise BundleRefused(
                    f"retired key: signature by key {s.keyid[:16]}, which a key rotation retired "
                    f"(key set v{trust.version} is in force); sign with the current keys")
            raise BundleRefused(f"unknown key: signature by key {s.keyid[:16]} which is not pinned "
                                f"for {meta.kind} bundles")
        try:
            pub.verify(bytes.fromhex(s.sig), message)
        except InvalidSignature as e:
            raise BundleRefused(f"bad signature by key {s.keyid[:16]}: the metadata was altered "
                                "or signed with another key") from e
        good.add(s.keyid)
    if len(good & keys.keys()) < threshold:
        what = "of the keys now pinned, " if new else ""
        raise BundleRefused(f"below threshold: {len(good & keys.keys())} valid signature(s) from "
                            f"distinct pinned keys, {what}{meta.kind} bundles need {threshold}")
    if new is not None and len(good & new[0].keys()) < new[1]:
        raise BundleRefused(f"below threshold of the new key set: {len(good & new[0].keys())} "
                            f"valid signature(s) by its keys role, it needs {new[1]} (the new "
                            "keys must prove they are held)")
    if meta.version <= installed_version:
        what = "replay of an already installed bundle" if meta.version == installed_version \
            else "rollback"
        raise BundleRefused(f"{what}: version {meta.version} is not above the installed "
                            f"{meta.kind} version {installed_version}")
    expires = parse_time(meta.expires)
    if now is not None and now >= expires:
        raise BundleRefused(f"expired: expired {meta.expires}, {clock} time is "
                            f"{dt.datetime.fromtimestamp(now, dt.UTC).isoformat(timespec='seconds')}")
    return Verified(envelope.bundle_id(), meta, tuple(sorted(good)), now, clock)

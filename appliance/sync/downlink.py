"""Ground → aircraft documents, the aircraft's side: verify, apply once, in an allowed mode, ack.

The receiver's answer to the watermarks probe carries the documents this aircraft has not
applied yet (``ground_receiver.downlink``): ``{aircraft, kind, version, issued, body, key_id,
signature}``. For each, :meth:`Downlink.take`:

1. verifies the ground's Ed25519 signature (``sync.ground_public_key``) over the canonical JSON
   of aircraft, kind, version, issued and body, and that it names this aircraft: otherwise
   ``refused`` (nothing applied);
2. a version at or below the one applied is acknowledged ``applied`` again and not re-applied
   (the previous acknowledgement was lost with the link): each version is applied once;
3. checks the body (a ``config`` is a :class:`FleetConfig`): a bad one is ``refused``;
4. checks the mode: a ``config`` is applied only in a mode whose policy allows software
   activation (GROUND, MAINTENANCE: the configuration of the aircraft is not changed in
   flight); a ``notice`` in any mode. Otherwise ``deferred``: kept, applied at the next allowed
   mode (:meth:`Downlink.on_mode`), acknowledged then;
5. applies it atomically: the state file ``{state_dir}/{kind}.json`` (version, body, when, mode)
   is written to a temporary file, fsynced and renamed over the old one, and only then is the
   running uplink told (one assignment: :attr:`Downlink.config`). A crash before the rename
   leaves the previous version whole; after it, the new one is in force at the next start.

The acknowledgements (:class:`Ack`) are sent by the uplink on the same connection
(``POST /v1/downlink/ack``); one that is lost is sent again when the document comes again.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..modes.policy import Mode, PolicyTable

__all__ = ["Ack", "Downlink", "FleetConfig", "document_message"]

log = logging.getLogger(__name__)
KINDS = ("config", "notice")


def document_message(aircraft: str, kind: str, version: int, issued: float, body: Any) -> bytes:
    """The bytes the ground signs for one document (must equal the receiver's)."""
    return json.dumps({"aircraft": aircraft, "kind": kind, "version": version, "issued": issued,
                       "body": body}, sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False).encode()


class FleetConfig(BaseModel):
    """A fleet configuration document.

    ``link_budgets``: link name -> bytes per flight hour (a satcom budget); ``priority_streams``:
    the streams a link whose policy says "priority" may carry, in addition to ``orders`` etc.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    link_budgets: dict[str, int] = Field(default_factory=dict)
    priority_streams: tuple[str, ...] | None = None


@dataclass(frozen=True, slots=True)
class Ack:
    """What the aircraft answers for one document (``status`` applied, deferred or refused)."""

    kind: str
    version: int
    status: str
    mode: str
    detail: str = ""

    def body(self) -> bytes:
        """The JSON body of ``POST /v1/downlink/ack``."""
        return json.dumps({"kind": self.kind, "version": self.version, "status": self.status,
                           "mode": self.mode, "detail": self.detail}).encode()


class Downlink:
    """The documents applied on this aircraft (see the module doc).

    ``state_dir``: where the applied documents live; ``ground_key``: base64 of the ground's raw
    Ed25519 public key (None: every document is refused); ``mode()``: the current mode.
    """

    def __init__(self, aircraft: str, state_dir: Path, ground_key: str | None,
                 policy: PolicyTable, mode: Callable[[], Mode],
                 clock: Callable[[], float] = time.time) -> None:
        """Load what was applied before (a missing or unreadable file: nothing applied)."""
        self.aircraft = aircraft
        self.dir = state_dir
        self.policy = policy
        self.mode = mode
        self.clock = clock
        self._key: Ed25519PublicKey | None = None
        if ground_key:
            try:
                self._key = Ed25519PublicKey.from_public_bytes(base64.b64decode(ground_key))
            except (binascii.Error, ValueError) as e:
                raise ValueError(f"sync.ground_public_key: not a base64 Ed25519 key: {e}") from e
        self.applied: dict[str, dict[str, Any]] = {}
        for kind in KINDS:
            try:
                self.applied[kind] = json.loads((self.dir / f"{kind}.json").read_text())
            except FileNotFoundError:
                pass
            except (OSError, ValueError) as e:
                log.error("downlink %s state unreadable (%s): taken as none applied", kind, e)
        self.deferred: dict[str, dict[str, Any]] = {}
        #: The fleet configuration in force (None: the settings' own values).
        self.config: FleetConfig | None = None
        if "config" in self.applied:
            self.config = FleetConfig.model_validate(self.applied["config"]["body"])
        #: Called with the new FleetConfig once it is applied.
        self.on_config: Callable[[FleetConfig], None] = lambda _c: None

    def version(self, kind: str) -> int:
        """The applied version of ``kind`` (0 for none)."""
        return int(self.applied.get(kind, {}).get("version", 0))

    def allowed(self, kind: str) -> bool:
        """True if a document of ``kind`` may be applied in the current mode."""
        return kind == "notice" or self.policy[self.mode()].software_activation

    def take(self, docs: Any) -> list[Ack]:
        """Handle the documents of a watermarks answer; returns the acknowledgements to send."""
        if not isinstance(docs, list):
            return []
        acks = []
        for doc in docs[:8]:
            ack = self._take_one(doc)
            if ack is not None:
                acks.append(ack)
        return acks

    def on_mode(self) -> list[Ack]:
        """The mode changed: apply the deferred documents it now allows; their acks."""
        acks = []
        for kind, doc in list(self.deferred.items()):
            if self.allowed(kind):
                del self.deferred[kind]
                ack = self._take_one(doc)
                if ack is not None:
                    acks.append(ack)
        return acks

    def _take_one(self, doc: Any) -> Ack | None:
        mode = str(self.mode())
        if not isinstance(doc, dict) or doc.get("kind") not in KINDS \
                or not isinstance(doc.get("version"), int):
            log.warning("downlink document malformed: %.200r", doc)
            return None
        kind, version = str(doc["kind"]), int(doc["version"])
        why = self._verify(doc)
        if why is not None:
            log.error("downlink %s v%d refused: %s", kind, version, why)
            return Ack(kind, version, "refused", mode, why)
        if version <= self.version(kind):
            return Ack(kind, version, "applied", self.applied[kind].get("mode", mode),
                       "applied before")
        config = None
        if kind == "config":
            try:
                config = FleetConfig.model_validate(doc["body"])
            except ValidationError as e:
                return Ack(kind, version, "refused", mode, f"bad fleet configuration: {e}"[:400])
        if not self.allowed(kind):
            self.deferred[kind] = doc
            return Ack(kind, version, "deferred", mode, f"not applied in {mode}")
        record = {"version": version, "issued": doc.get("issued"), "body": doc["body"],
                  "applied_at": self.clock(), "mode": mode}
        self._write_atomically(kind, record)
        self.applied[kind] = record
        self.deferred.pop(kind, None)
        if config is not None:
            self.config = config
            self.on_config(config)
        log.info("downlink %s v%d applied in %s", kind, version, mode)
        return Ack(kind, version, "applied", mode)

    def _verify(self, doc: dict[str, Any]) -> str | None:
        if self._key is None:
            return "no ground_public_key configured: documents cannot be verified"
        if doc.get("aircraft") != self.aircraft:
            return f"document is for {str(doc.get('aircraft'))[:64]}, not {self.aircraft}"
        try:
            msg = document_message(self.aircraft, doc["kind"], doc["version"],
                                   float(doc["issued"]), doc["body"])
            self._key.verify(base64.b64decode(str(doc["signature"]), validate=True), msg)
        except (KeyError, TypeError, ValueError, binascii.Error, InvalidSignature):
            return "signature does not verify with the ground key"
        return None

    def _write_atomically(self, kind: str, record: dict[str, Any]) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        path = self.dir / f"{kind}.json"
        tmp = path.with_name(path.name + ".tmp")
        with tmp.open("w") as f:
            json.dump(record, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        fd = os.open(self.dir, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

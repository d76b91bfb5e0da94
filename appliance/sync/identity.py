r"""The aircraft's identity towards the ground: its Ed25519 key pair, and request signatures.

The private key lives in one file (PEM, PKCS#8, unencrypted, mode 0600), named by the sync
setting ``signing_key_file``; the ground holds the public key (``ground-receiver aircraft
register``). Each request to the receiver carries ``X-Aircraft``, ``X-Key-Id`` (first 16 hex of
the SHA-256 of the raw public key), ``X-Timestamp`` (epoch s) and ``X-Signature`` (base64 of the
Ed25519 signature of the message below), the ground receiver's ``ground_receiver.identity``::

    cabin-sync-v1 \\n METHOD \\n path \\n aircraft \\n key id \\n timestamp \\n sha256-hex(body)

Key generation and rotation (documented in receiver/README.md)::

    python -m appliance.sync.identity keygen /var/lib/appliance/sync-key.pem   # prints the public key
    ground-receiver aircraft rotate F-GKXA '<public key>'                    # on the ground
    # install the new file as signing_key_file and restart the sync (within the grace)
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

__all__ = ["AircraftKey", "signed_message"]

DOMAIN = "cabin-sync-v1"


def signed_message(method: str, path: str, aircraft: str, kid: str, timestamp: str,
                   body: bytes) -> bytes:
    """The bytes signed for one request (must equal the ground receiver's)."""
    return "\n".join([DOMAIN, method.upper(), path, aircraft, kid, timestamp,
                      hashlib.sha256(body).hexdigest()]).encode()


class AircraftKey:
    """One aircraft's private key: signs requests. ``clock()`` epoch s."""

    def __init__(self, aircraft: str, key: Ed25519PrivateKey,
                 clock: Callable[[], float] = time.time) -> None:
        """Sign as ``aircraft`` with ``key``."""
        self.aircraft = aircraft
        self._key = key
        self.clock = clock
        self.public_raw = key.public_key().public_bytes(serialization.Encoding.Raw,
                                                        serialization.PublicFormat.Raw)
        self.key_id = hashlib.sha256(self.public_raw).hexdigest()[:16]

    @property
    def public_b64(self) -> str:
        """The public key as base64 of its raw 32 bytes (what the ground registers)."""
        return base64.b64encode(self.public_raw).decode()

    @classmethod
    def load(cls, aircraft: str, path: Path) -> AircraftKey:
        """Read the PEM private key at ``path``.

        Raises ValueError (naming the file) when it is not an unencrypted Ed25519 PEM key, or
        OSError when it cannot be read.
        """
        data = path.read_bytes()
        try:
            key = serialization.load_pem_private_key(data, password=None)
        except (ValueError, TypeError) as e:
            raise ValueError(f"{path}: not an unencrypted PEM private key: {e}") from e
        if not isinstance(key, Ed25519PrivateKey):
            raise ValueError(f"{path}: not an Ed25519 key but {type(key).__name__}")
        return cls(aircraft, key)

    @staticmethod
    def generate(path: Path) -> AircraftKey:
        """Make a new key pair, write the private key to ``path`` (0600, atomically)."""
        key = Ed25519PrivateKey.generate()
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
        tmp = path.with_name(path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(pem)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        return AircraftKey("", key)

    def headers(self, method: str, path: str, body: bytes) -> dict[str, str]:
        """The four identity headers for a request with this ``body`` (b"" for a GET)."""
        ts = f"{self.clock():.3f}"
        sig = self._key.sign(signed_message(method, path, self.aircraft, self.key_id, ts, body))
        return {"X-Aircraft": self.aircraft, "X-Key-Id": self.key_id, "X-Timestamp": ts,
                "X-Signature": base64.b64encode(sig).decode()}


def main(argv: list[str] | None = None) -> int:
    """``python -m appliance.sync.identity keygen PATH``: new key, prints the public key."""
    ap = argparse.ArgumentParser(prog="python -m appliance.sync.identity")
    sub = ap.add_subparsers(dest="cmd", required=True)
    k = sub.add_parser("keygen", help="write a new private key; print the public key (base64)")
    k.add_argument("path", type=Path)
    k.add_argument("--force", action="store_true", help="replace an existing key file")
    p = sub.add_parser("public", help="print the public key of a private key file")
    p.add_argument("path", type=Path)
    args = ap.parse_args(argv)
    try:
        if args.cmd == "keygen":
            if args.path.exists() and not args.force:
                print(f"{args.path} exists (--force to replace it)", file=sys.stderr)
                return 1
            key = AircraftKey.generate(args.path)
        else:
            key = AircraftKey.load("", args.path)
    except (OSError, ValueError) as e:
        print(f"identity: {e}", file=sys.stderr)
        return 1
    print(key.public_b64)
    return 0


if __name__ == "__main__":
    sys.exit(main())

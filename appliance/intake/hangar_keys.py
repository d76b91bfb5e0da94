"""``appliance hangar keyset``: build a key rotation bundle (a ``keys`` bundle, see :mod:`.bundle`).

The new key set pins, for each kind (``content``, ``software``, ``keys``), public keys (each a
``KEY.pub`` file written by ``hangar keygen`` or 64 hex digits) and a threshold. The bundle is then
signed with ``hangar sign`` by the threshold of the ``keys`` role now in force on the aircraft
*and* by the threshold of the new set's ``keys`` role, and pushed with ``hangar push`` like any
bundle. Its ``--version`` must be above the aircraft's key set version (``hangar status``: the
``keys`` row; 0 while the configured keys are in force). Once active, the aircraft refuses every
signature by a key that the new set no longer pins; no restart is needed.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

from .bundle import KINDS, Envelope, RoleMeta
from .keyset import KEYS_FILE

__all__ = ["add_keyset_parser", "build_keyset_bundle", "read_public_key"]


def read_public_key(text: str) -> str:
    """A public key as 64 lower-case hex digits, from the hex itself or a ``.pub`` file's path.

    Raises ValueError naming what was given.
    """
    value = text.strip()
    if not re.fullmatch(r"[0-9a-fA-F]{64}", value):
        path = Path(value)
        try:
            value = path.read_text().strip()
        except OSError as e:
            raise ValueError(f"{text}: neither 64 hex digits nor a readable .pub file "
                             f"({e.strerror})") from None
        if not re.fullmatch(r"[0-9a-fA-F]{64}", value):
            raise ValueError(f"{text}: the file does not hold a public key (64 hex digits)")
    return value.lower()


def build_keyset_bundle(version: int, roles: dict[str, tuple[list[str], int]], out: Path,
                        expires_days: float = 30.0, name: str | None = None,
                        issued: float | None = None) -> Envelope:
    """Write the unsigned ``keys`` bundle of key set ``version`` into ``out``; returns its envelope.

    ``roles``: ``{kind: ([hex public key...], threshold)}`` for every kind. Raises ValueError when
    a kind is missing, a key repeated or malformed, or a threshold above its keys.
    """
    from pydantic import ValidationError

    from .hangar import build_bundle

    if missing := [k for k in KINDS if k not in roles]:
        raise ValueError(f"the key set needs keys for every kind; missing: {', '.join(missing)}")
    keys: dict[str, Any] = {}
    for kind, (pubs, threshold) in sorted(roles.items()):
        try:
            keys[kind] = RoleMeta(keys=pubs, threshold=threshold).model_dump()
        except ValidationError as e:
            raise ValueError(f"{kind}: {e.errors()[0]['msg']}") from None
    src = Path(tempfile.mkdtemp(prefix="keyset."))
    try:
        (src / KEYS_FILE).write_text(json.dumps(keys, sort_keys=True, indent=1) + "\n")
        # The payload's keys.json must parse back to exactly the signed set.
        return build_bundle("keys", name or f"keys-v{version}", version, [src], out, expires_days,
                            issued, keys=keys)
    finally:
        shutil.rmtree(src, ignore_errors=True)


def _cmd_keyset(a: argparse.Namespace) -> int:
    try:
        roles = {kind: ([read_public_key(k) for k in getattr(a, kind)],
                        getattr(a, f"{kind}_threshold")) for kind in KINDS}
        env = build_keyset_bundle(a.version, roles, a.output, a.expires_days)
    except ValueError as e:
        print(f"appliance hangar keyset: {e}")
        return 2
    m = env.meta()
    print(f"built {a.output}: key set v{m.version} ("
          + ", ".join(f"{k} {len(r.keys)} key(s), threshold {r.threshold}"
                      for k, r in sorted((m.keys or {}).items()))
          + f"), expires {m.expires}\n  sign it with the threshold of the keys role in force AND "
          "of the new keys role (hangar sign --key ...), then hangar push")
    return 0


KEYSET_HELP = """Build a key rotation bundle: a new set of pinned keys.

The new set pins, for each kind (content, software, keys), public keys and how many of them must
sign. The bundle must be signed by the threshold of the keys role now in force AND by the
threshold of the new set's keys role (as TUF rotates its root). Once active, a bundle signed
only by a retired key is refused; the version of the set only goes up.
"""


def add_keyset_parser(hs: Any) -> None:
    """Add ``keyset`` to the ``hangar`` subcommands."""
    k = hs.add_parser("keyset", help="build a key rotation bundle (a new set of pinned keys)",
                      description=KEYSET_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    k.add_argument("--version", type=int, required=True,
                   help="key set version; must be above the aircraft's (0 = configured keys)")
    for kind in KINDS:
        k.add_argument(f"--{kind}", nargs="+", required=True, metavar="PUB",
                       help=f"public keys pinned for {kind} bundles (KEY.pub files or hex)")
        k.add_argument(f"--{kind}-threshold", type=int, default=1, metavar="N",
                       help=f"how many of the {kind} keys must sign (default 1)")
    k.add_argument("--expires-days", type=float, default=30.0, help="validity from now (days)")
    k.add_argument("-o", "--output", type=Path, required=True, help="bundle directory to write")
    k.set_defaults(fn=_cmd_keyset)

"""Key rotation: the key set in force, and the activator of ``keys`` bundles.

The key set in force is the newest one installed by a ``keys`` bundle (its ``intake_installed``
row, kind ``keys``: ``version`` is the key set's version, ``detail`` holds ``{"roles": {kind:
{"keys": [hex...], "threshold": n}}, "retired": [keyid...]}``), else the keys pinned in the
configuration (``[intake.roles.*]``, version 0). The row is written in the same transaction as the
activation's journal row and outbox row, on the data partition's journal database, so a rotation is
whole or absent after a power cut and persists across restarts; its version only goes up (a
replayed or older key set is refused by :func:`~.bundle.verify`). Once a key set is installed it
is the authority: keys pinned in the configuration no longer count (as TUF's newest trusted root).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from sqlalchemy import Connection

from ..errors import BundleRefused
from ..store.writer import Writer
from .bundle import Trust, Verified

__all__ = ["KEYS_FILE", "keys_activator", "read_trust", "roles_of", "trust_from_row"]

#: The payload file of a ``keys`` bundle: the new key set as JSON, for people.
KEYS_FILE = "keys.json"


def roles_of(v: Verified) -> dict[str, dict[str, Any]]:
    """The new key set of a verified ``keys`` bundle: ``{kind: {"keys": [hex], "threshold": n}}``."""
    if v.meta.keys is None:
        raise BundleRefused("not a keys bundle: it carries no key set")
    return {k: r.model_dump() for k, r in sorted(v.meta.keys.items())}


def trust_from_row(row: Mapping[str, Any] | None, configured: Trust) -> Trust:
    """The trust in force: from the installed ``keys`` row, else ``configured``."""
    if row is None:
        return configured
    detail = row["detail"]
    roles = {k: (list(r["keys"]), int(r["threshold"])) for k, r in detail["roles"].items()}
    return Trust.from_hex(roles, int(row["version"]), detail.get("retired", ()))


def read_trust(journal: Path, configured: Trust) -> Trust:
    """The trust in force read from the journal database file ``journal`` (blocking).

    For a process apart from the service (the privileged updater re-verifying a bundle): the
    installed ``keys`` row, else ``configured``. ``configured`` also when the database or its
    intake tables do not exist yet. Raises ValueError on a malformed stored key.
    """
    from sqlalchemy import select
    from sqlalchemy.exc import OperationalError

    from ..store.engine import make_engine
    from .tables import intake_installed

    if not journal.exists():
        return configured
    engine = make_engine(journal, readonly=True)
    try:
        with engine.connect() as conn:
            row = conn.execute(select(intake_installed)
                               .where(intake_installed.c.kind == "keys")).mappings().first()
    except OperationalError:  # no intake tables yet (a journal not migrated)
        return configured
    finally:
        engine.dispose()
    return trust_from_row(None if row is None else dict(row), configured)


def keys_activator(writer: Writer, in_force: Callable[[], Trust]) -> Callable[..., Any]:
    """The activator of ``keys`` bundles: commits the new key set with the activation.

    ``in_force()`` (blocking, called once per activation) is the trust being replaced: the keys it
    pins that the new set does not join ``retired``. Raises BundleRefused when the payload's
    ``keys.json`` differs from the signed key set (a faulty hangar tool).
    """
    async def activate(staged: Path, v: Verified,
                       extra: Callable[[Connection, dict[str, Any]], Any]) -> dict[str, Any]:
        roles = roles_of(v)
        try:
            shown = json.loads((staged / KEYS_FILE).read_bytes())
        except (OSError, ValueError) as e:
            raise BundleRefused(f"keys bundle without a readable {KEYS_FILE}: {e}") from e
        if shown != roles:
            raise BundleRefused(f"{KEYS_FILE} differs from the signed key set")
        old = in_force()
        new_ids = Trust.from_hex({k: (r["keys"], r["threshold"]) for k, r in roles.items()}).keyids()
        retired = sorted((old.retired | old.keyids()) - new_ids)
        detail = {"roles": roles, "retired": retired, "previous_key_set": old.version}
        await writer.run(lambda conn: extra(conn, detail))
        return detail
    return activate

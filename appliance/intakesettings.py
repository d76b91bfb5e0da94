"""Settings of the hangar intake (``[intake]``, read by :mod:`appliance.settings`).

Kept apart from :mod:`appliance.settings` only for size; :class:`~appliance.settings.Settings` holds
it as ``intake`` (environment ``APPLIANCE_INTAKE__...``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["IntakeRole", "IntakeSettings"]


class IntakeRole(BaseModel):
    """The pinned Ed25519 public keys (hex, 32 bytes raw) of one bundle kind and their threshold."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    keys: list[str] = []
    threshold: int = Field(1, ge=1)


class IntakeSettings(BaseModel):
    """Hangar intake of signed bundles (appliance.intake).

    ``roles``: per bundle kind (``content``, ``software``, ``keys``) the pinned keys and how many
    of them must sign: the initial key set. A ``keys`` bundle signed by the ``keys`` role's
    threshold replaces the whole set (key rotation, ``appliance hangar keyset``); from then on the
    rotated set, kept in the journal database, is in force and these are no longer read.
    ``staging_dir`` (default ``<data_dir>/intake``) holds uploads, unpacked and staged
    bundles and the software slots; it must be on the same filesystem as ``<data_dir>/content``.
    ``max_bundle_bytes`` caps a payload; ``chunk_bytes`` is the chunk size the push client is told
    to use; ``free_margin_bytes`` is kept free after a bundle's worst-case footprint.
    ``journal_reserve_bytes`` (default 16 MiB) is free space on the staging area's filesystem
    that the intake never takes, checked before a bundle is admitted, before each chunk is stored
    and before unpacking (refused with "insufficient storage" otherwise): the journal keeps it,
    so passenger orders still commit when a bundle filled the disk. ``idle_timeout_s`` (default
    10 s): an upload body that sends nothing for this long is dropped (the bytes received are
    kept) and the upload is free for a resuming push; a PUT waits at most this long for another
    connection writing the same upload. Keep it well below the push's own ``--timeout-s``
    (30 s). ``quiet``:
    content activation waits (up to ``quiet_wait_s``) until nobody is playing (``no_playback``)
    or does not wait (``none``). ``health_bound_s``: a new software slot must reach READY and
    pass its health check within that many seconds or the privileged updater rolls it back.
    ``software_root``: the A/B software slots (``slots/a``, ``slots/b``, ``current``; the
    software partition in the image), read by the service, written only by the updater
    (:mod:`appliance.intake.updater`).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)
    enabled: bool = True
    roles: dict[Literal["content", "software", "keys"], IntakeRole] = {}
    staging_dir: Path | None = None
    max_bundle_bytes: int = Field(8 << 30, gt=0)
    chunk_bytes: int = Field(1 << 20, ge=4096)
    free_margin_bytes: int = Field(64 << 20, ge=0)
    journal_reserve_bytes: int = Field(16 << 20, ge=0)
    idle_timeout_s: float = Field(10.0, gt=0)
    quiet: Literal["none", "no_playback"] = "no_playback"
    quiet_wait_s: float = Field(300.0, ge=0)
    health_bound_s: float = Field(60.0, gt=0)
    software_root: Path = Path("/opt/appliance")

"""The intake tables in the journal database (created by migration 0006).

- ``intake_upload``: one row per bundle being or having been uploaded: ``id`` (the bundle id,
  SHA-256 of the canonical signed metadata), ``kind``, ``name``, ``version``, ``envelope`` (the
  signed metadata JSON as received), ``length`` (payload bytes), ``received`` (bytes durably
  stored, the resume offset), ``state`` (see :data:`STATES`), ``reason`` (of a refusal or
  failure), ``keyids`` (JSON list), ``created``/``updated`` (epoch s).
- ``intake_installed``: per kind, the active bundle: ``version``, ``bundle_id``, ``name``,
  ``keyids``, ``installed_at`` (epoch s), ``detail`` (JSON: packages or slot).
The security time floor (epoch s; the newest signed ``issued`` seen and the newest clock a bundle
was admitted by; it only rises) is the ``state`` row ``intake.time_floor``.
"""

from __future__ import annotations

from sqlalchemy import JSON, Column, Float, Integer, MetaData, String, Table, Text

__all__ = ["STATES", "TIME_FLOOR_KEY", "intake_installed", "intake_metadata", "intake_upload"]

intake_metadata = MetaData()
TIME_FLOOR_KEY = "intake.time_floor"
#: receiving -> complete -> staged -> active; or refused / aborted / failed (with a reason).
STATES = ("receiving", "complete", "staged", "active", "refused", "aborted", "failed")

intake_upload = Table(
    "intake_upload", intake_metadata,
    Column("id", String(64), primary_key=True),
    Column("kind", String(16), nullable=False),
    Column("name", String(100), nullable=False),
    Column("version", Integer, nullable=False),
    Column("envelope", JSON, nullable=False),
    Column("length", Integer, nullable=False),
    Column("received", Integer, nullable=False),
    Column("state", String(16), nullable=False),
    Column("reason", Text),
    Column("keyids", JSON, nullable=False),
    Column("created", Float, nullable=False),
    Column("updated", Float, nullable=False),
)

intake_installed = Table(
    "intake_installed", intake_metadata,
    Column("kind", String(16), primary_key=True),
    Column("version", Integer, nullable=False),
    Column("bundle_id", String(64), nullable=False),
    Column("name", String(100), nullable=False),
    Column("keyids", JSON, nullable=False),
    Column("installed_at", Float, nullable=False),
    Column("detail", JSON, nullable=False),
)

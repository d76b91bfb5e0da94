"""The cabin network's tables in the journal database (created by migration 0005_wap).

- ``wap_device``: the inventory: one row per access point ever configured (``retired`` set when it
  left the settings), with its last known state (unknown, ok, converging, held, unreachable,
  not_ready, needs_attention), the reason, when it last answered (epoch s) and its last status (JSON, the
  API's shape).
- ``wap_job``: the job queue, one row per job: ``kind`` reconcile | apply | reboot; ``state``
  queued | running | done | failed | stale | needs_attention; ``idempotency_key`` unique (a job
  submitted twice is stored once; the key is also the tag the device remembers); ``spec`` the
  partial configuration (apply, reconcile); ``mode`` the mode a reconcile job serves; times in
  epoch s; ``attempts`` tries so far, ``resumed`` restarts survived; ``failure`` not_ready |
  auth_failed | cut_off | error.
"""

from __future__ import annotations

from sqlalchemy import JSON, Column, Float, Index, Integer, MetaData, String, Table, Text

__all__ = ["cabin_metadata", "wap_device", "wap_job"]

cabin_metadata = MetaData()

wap_device = Table(
    "wap_device", cabin_metadata,
    Column("name", String(64), primary_key=True),
    Column("driver", String(16), nullable=False),
    Column("address", String(256), nullable=False),
    Column("state", String(24), nullable=False),
    Column("reason", Text),
    Column("last_seen", Float),
    Column("last_status", JSON),
    Column("added", Float, nullable=False),
    Column("updated", Float, nullable=False),
    Column("retired", Float),
)

wap_job = Table(
    "wap_job", cabin_metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("device", String(64), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("idempotency_key", String(160), nullable=False, unique=True),
    Column("state", String(16), nullable=False),
    Column("mode", String(16)),
    Column("spec", JSON, nullable=False),
    Column("requested_by", String(64), nullable=False),
    Column("created", Float, nullable=False),
    Column("started", Float),
    Column("finished", Float),
    Column("expected_end", Float),
    Column("attempts", Integer, nullable=False),
    Column("resumed", Integer, nullable=False),
    Column("failure", String(16)),
    Column("detail", Text),
    Index("ix_wap_job_device_state", "device", "state"),
    Index("ix_wap_job_state", "state"),
)

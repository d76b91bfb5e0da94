"""Journal rows of every kind in one schema: ``data`` holds only the kind's own fields.

Before this revision the rows of avionics events (kinds ``mode``, ``airground``, ``phase``) kept
the whole event in ``data`` (``kind``, ``t_card``, ``utc``, ``time_source`` repeated beside
``previous``, ``current``, ``evidence``); every other kind already kept only its own fields. The
upgrade drops the repeated fields (the columns hold them); the downgrade puts them back from the
columns. See ``appliance/store/journal.py`` for the schema.

Outbox records are not rewritten: a record may already be on the ground (sent, its
acknowledgement lost), and the receiver keeps the first content of an idempotency key and counts
a different one as a conflict; records queued before this revision keep their older payload shape
(no ``data`` key), and the ground can tell them apart by that.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01
"""

import json
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

_REPEATED = ("t_card", "utc", "time_source", "kind")


def _event_rows(conn: sa.Connection) -> list[Any]:
    return list(conn.execute(sa.text(
        "SELECT id, kind, t_card, utc, time_source, data FROM journal WHERE kind IN "
        "('mode', 'airground', 'phase') ORDER BY id")))


def _load(raw: Any) -> dict[str, Any]:
    data = json.loads(raw) if isinstance(raw, str | bytes) else raw
    return dict(data) if isinstance(data, dict) else {"value": data}


def upgrade() -> None:
    """Drop ``kind``, ``t_card``, ``utc`` and ``time_source`` from event rows' ``data``."""
    conn = op.get_bind()
    for r in _event_rows(conn):
        data = _load(r.data)
        new = {k: v for k, v in data.items() if k not in _REPEATED}
        if new != data:
            conn.execute(sa.text("UPDATE journal SET data = :d WHERE id = :i"),
                         {"d": json.dumps(new), "i": r.id})


def downgrade() -> None:
    """Put the repeated fields back into event rows' ``data``, in the old order."""
    conn = op.get_bind()
    for r in _event_rows(conn):
        data = _load(r.data)
        old = {"t_card": r.t_card, "utc": r.utc, "time_source": r.time_source,
               "previous": data.get("previous"), "current": data.get("current"),
               "evidence": data.get("evidence", {}), "kind": r.kind}
        old.update({k: v for k, v in data.items() if k not in old})
        conn.execute(sa.text("UPDATE journal SET data = :d WHERE id = :i"),
                     {"d": json.dumps(old), "i": r.id})

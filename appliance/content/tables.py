"""The content tables in the journal database (created by migration 0004).

- ``content``: the installed version of each title: ``id`` (the manifest's), ``version`` (manifest
  digest), ``dir`` (the package directory's name under the store), ``manifest`` (JSON), and
  ``installed_at`` (epoch s). One row per title; installing a new version replaces the row.
- ``feedback``: passenger survey answers; ``idempotency_key`` is the client's, so a retry is stored
  once; ``outbox_key`` names the record queued for the ground in the same transaction.
- ``menu_items``: the onboard shop's menu in force (:mod:`.menu`): ``sku``, ``names`` (JSON
  ``{language: name}``), ``price`` (minor units of ``currency``, e.g. cents), ``stock`` (units
  left; NULL: not counted), ``allergens`` (JSON list), ``position`` (display order). A menu
  bundle replaces every row in one transaction; the menu's version and name are the ``state``
  row ``menu.version``.
The catalog's generation (bumped on every install or removal) is the ``state`` row
``content.generation``.
"""

from __future__ import annotations

from sqlalchemy import JSON, Column, Float, Integer, MetaData, String, Table, Text

__all__ = ["GENERATION_KEY", "MENU_KEY", "content", "content_metadata", "feedback", "menu_items"]

content_metadata = MetaData()
GENERATION_KEY = "content.generation"
MENU_KEY = "menu.version"

content = Table(
    "content", content_metadata,
    Column("id", String(64), primary_key=True),
    Column("version", String(64), nullable=False),
    Column("dir", String(200), nullable=False),
    Column("manifest", JSON, nullable=False),
    Column("installed_at", Float, nullable=False),
)

feedback = Table(
    "feedback", content_metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("idempotency_key", String(64), nullable=False, unique=True),
    Column("seat", String(4)),
    Column("answers", JSON, nullable=False),
    Column("comment", Text, nullable=False),
    Column("utc", Float, nullable=False),
    Column("time_source", String(16), nullable=False),
    Column("outbox_key", String(128), nullable=False),
    Column("created", Float, nullable=False),
)

menu_items = Table(
    "menu_items", content_metadata,
    Column("sku", String(32), primary_key=True),
    Column("names", JSON, nullable=False),
    Column("price", Integer, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("stock", Integer),
    Column("allergens", JSON, nullable=False),
    Column("position", Integer, nullable=False),
)

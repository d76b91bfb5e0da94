"""The onboard shop's menu: its format, the menu in force (table ``menu_items``) and menu bundles.

A menu document (TOML or JSON, the same shape)::

    version = 3                      # optional in a file; a bundle's version is its signed one
    [[item]]
    sku = "COFFEE"                   # A-Z, 0-9, _ and -; unique
    name = {en = "Coffee", fr = "Café"}   # or one string (English)
    price = 3.0                      # in the currency's major unit; stored in minor units (x100)
    currency = "EUR"                 # ISO 4217, the same for every item
    stock = 40                       # units on board (omitted: not counted, never sold out)
    allergens = ["milk"]             # optional

:func:`parse_menu` checks it (:class:`MenuError` with the reason). The menu in force is the
``menu_items`` table (:mod:`.tables`); :func:`replace_menu` swaps every row inside the caller's
transaction (so a menu bundle's activation, its intake rows and its journal row commit together:
never half a menu); :func:`ensure_menu` puts the packaged ``menu.toml`` in place at first start
only. :class:`MenuActivator` is the intake's activator for ``menu`` bundles (the daemon wires it).
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Callable
from decimal import Decimal
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from sqlalchemy import Connection, delete, insert, select
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from ..errors import BundleRefused, ContentError
from ..store.models import state
from ..store.writer import Writer
from .tables import MENU_KEY, menu_items

__all__ = ["MENU_FILES", "MenuActivator", "MenuError", "MenuItem", "ensure_menu", "parse_menu",
           "read_menu", "replace_menu"]

#: The file a menu bundle carries (one of them).
MENU_FILES = ("menu.json", "menu.toml")
_LANG = r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})?$"


class MenuError(ContentError):
    """A menu document is malformed; the message says where."""


class MenuItem(BaseModel):
    """One item: sku, names per language, price (minor units), currency, stock, allergens.

    ``stock`` None: not counted (the item never runs out; tea from the galley, say).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)
    sku: Annotated[str, Field(min_length=1, max_length=32, pattern=r"^[A-Z0-9_-]+$")]
    name: dict[Annotated[str, Field(pattern=_LANG)],
               Annotated[str, Field(min_length=1, max_length=80)]]
    price: Annotated[int, Field(ge=0, le=100_000_00)]
    currency: Annotated[str, Field(pattern=r"^[A-Z]{3}$")]
    stock: Annotated[int, Field(ge=0, le=100_000)] | None = None
    allergens: Annotated[list[Annotated[str, Field(max_length=40)]], Field(max_length=20)] = []

    @field_validator("name", mode="before")
    @classmethod
    def _names(cls, v: Any) -> Any:
        return {"en": v} if isinstance(v, str) else v

    @field_validator("price", mode="before")
    @classmethod
    def _minor(cls, v: Any) -> Any:
        if isinstance(v, bool) or not isinstance(v, int | float | str):
            raise ValueError("a price is a number")
        cents = Decimal(str(v)) * 100
        if cents != cents.to_integral_value():
            raise ValueError("a price has at most two decimals")
        return int(cents)

    @model_validator(mode="after")
    def _english(self) -> MenuItem:
        if "en" not in self.name:
            raise ValueError("every item needs an English name ('en')")
        return self

    def row(self, position: int) -> dict[str, Any]:
        """The item as a ``menu_items`` row."""
        return {"sku": self.sku, "names": self.name, "price": self.price,
                "currency": self.currency, "stock": self.stock, "allergens": self.allergens,
                "position": position}


class MenuDoc(BaseModel):
    """A whole menu: items (1..200, unique SKUs, one currency) and an optional version."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    version: Annotated[int, Field(ge=0)] | None = None
    item: Annotated[list[MenuItem], Field(min_length=1, max_length=200)]

    @model_validator(mode="after")
    def _check(self) -> MenuDoc:
        skus = [i.sku for i in self.item]
        if len(set(skus)) != len(skus):
            raise ValueError("a SKU is listed twice")
        if len({i.currency for i in self.item}) != 1:
            raise ValueError("every item must be priced in the same currency")
        return self


def parse_menu(raw: bytes, name: str = "menu.toml") -> list[MenuItem]:
    """The items of a menu document (TOML, or JSON when ``name`` ends in ``.json``).

    Raises MenuError with the reason (``item.2.price: ...``).
    """
    try:
        data = json.loads(raw) if name.endswith(".json") else tomllib.loads(raw.decode())
        if isinstance(data, dict) and "items" in data and "item" not in data:
            data["item"] = data.pop("items")
        return list(MenuDoc.model_validate(data).item)
    except ValidationError as e:
        err = e.errors()[0]
        where = ".".join(str(x) for x in err.get("loc", ()))
        raise MenuError(f"{name}: {where}: {err.get('msg')}") from e
    except (ValueError, UnicodeDecodeError) as e:
        raise MenuError(f"{name}: {e}") from e


def default_menu() -> list[MenuItem]:
    """The menu shipped in the package (``menu.toml``): the first start's menu only."""
    return parse_menu(resources.files(__package__).joinpath("menu.toml").read_bytes())


def replace_menu(conn: Connection, items: list[MenuItem], version: int, name: str) -> None:
    """Replace every menu row by ``items`` in ``conn``'s transaction; record version and name."""
    conn.execute(delete(menu_items))
    conn.execute(insert(menu_items), [it.row(i) for i, it in enumerate(items)])
    value = {"version": version, "name": name}
    conn.execute(sqlite_insert(state).values(key=MENU_KEY, value=value)
                 .on_conflict_do_update(index_elements=["key"], set_={"value": value}))


def menu_info(conn: Connection) -> dict[str, Any]:
    """``{"version", "name"}`` of the menu in force (version 0: the packaged default)."""
    v = conn.execute(select(state.c.value).where(state.c.key == MENU_KEY)).scalar()
    return dict(v) if isinstance(v, dict) else {"version": 0, "name": "none"}


def read_menu(conn: Connection) -> list[dict[str, Any]]:
    """The menu in force, in display order: ``[{sku, names, name, price, currency, stock, allergens}]``.

    ``price`` in minor units; ``name`` is the English name (older clients).
    """
    rows = conn.execute(select(menu_items).order_by(menu_items.c.position)).mappings()
    return [{"sku": r["sku"], "names": r["names"], "name": r["names"].get("en", r["sku"]),
             "price": r["price"], "currency": r["currency"], "stock": r["stock"],
             "allergens": r["allergens"]} for r in rows]


def ensure_menu(conn: Connection) -> bool:
    """Install the packaged default menu if no menu was ever installed; True if it did."""
    if conn.execute(select(state.c.value).where(state.c.key == MENU_KEY)).first() is not None:
        return False
    replace_menu(conn, default_menu(), 0, "packaged default")
    return True


def staged_menu(staged: Path) -> tuple[str, bytes]:
    """The menu file of a staged menu bundle: (its name, its bytes); BundleRefused if none."""
    for name in MENU_FILES:
        if (staged / name).is_file():
            return name, (staged / name).read_bytes()
    raise BundleRefused(f"a menu bundle carries one of {', '.join(MENU_FILES)}")


class MenuActivator:
    """The intake's activator of ``menu`` bundles: the new menu replaces the old in one commit."""

    def __init__(self, writer: Writer, on_change: Callable[[], None] = lambda: None) -> None:
        """Write through ``writer``; ``on_change()`` runs after the commit (cache bumps)."""
        self.writer = writer
        self.on_change = on_change

    async def __call__(self, staged: Path, v: Any,
                       extra: Callable[[Connection, dict[str, Any]], Any]) -> dict[str, Any]:
        """Check the staged menu, then replace the menu and run ``extra`` in one transaction.

        ``v`` is the intake's verified bundle (``v.meta.version``, ``v.meta.name``). Returns the
        detail ``{"menu_items": n, "currency": c}``. Raises BundleRefused (malformed menu).
        """
        name, raw = staged_menu(staged)
        try:
            items = parse_menu(raw, name)
        except MenuError as e:
            raise BundleRefused(f"menu refused: {e}") from e
        detail = {"menu_items": len(items), "currency": items[0].currency}

        def write(conn: Connection) -> None:
            replace_menu(conn, items, int(v.meta.version), str(v.meta.name))
            extra(conn, detail)

        await self.writer.run(write)
        self.on_change()
        return detail

"""Ground operations routes: the fleet view, the daily export, Prometheus metrics.

- ``GET /fleet`` (role ``fleet``): the fleet view, one HTML page (no script) rendered from
  :func:`~ground_receiver.fleet.fleet_rows`; ``GET /fleet.json`` the same as JSON.
- ``GET /fleet/export/{YYYY-MM-DD}.csv`` (role ``export``): the day's orders, usage and
  summaries (:func:`~ground_receiver.fleet.export_day`), streamed.
- ``GET /fleet/export/{YYYY-MM-DD}/flights.csv`` (role ``export``): orders and usage totals of
  the flights that started that UTC day (:func:`~ground_receiver.fleet.export_flights`).
- ``GET /metrics`` (role ``metrics``): Prometheus text format, this receiver process's counters
  (each instance is scraped on its own; the per-aircraft state is in the database, not here).
  Behind the same operator sign-in as the rest: give the scraper an operator with only the
  ``metrics`` role (Prometheus ``basic_auth`` in its scrape config).

Operators sign in with HTTP Basic: user = operator name, password = its token, configured as
``[operators.NAME] token = "sha256:…" roles = ["fleet", "export"]`` (``ground-receiver
hash-token`` prints the hash). 401 without or with wrong credentials, 403 without the role.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hmac
import html
import time
from collections.abc import Callable, Iterable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from sqlalchemy import Engine

from .fleet import export_day, export_flights, fleet_rows
from .settings import ReceiverSettings, hash_token

__all__ = ["Metrics", "add_ops_routes"]


class Metrics:
    """This process's counters (a registry of its own: several apps may live in one process)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.batches = Counter("ground_batches", "Batches answered", ["result"], registry=r)
        self.records = Counter("ground_records_applied", "Records stored (new)", registry=r)
        self.duplicates = Counter("ground_records_duplicate", "Records already held", registry=r)
        self.bytes = Counter("ground_body_bytes", "Compressed batch bytes received", registry=r)
        self.refused = Counter("ground_requests_refused", "Requests refused", ["code"],
                               registry=r)
        self.latency = Histogram("ground_batch_seconds", "Batch handling time (s)", registry=r,
                                 buckets=(.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10))
        self.downlink_acks = Counter("ground_downlink_acks", "Downlink acknowledgements",
                                     ["status"], registry=r)


class _Denied(Exception):
    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status, self.detail = status, detail


def add_ops_routes(app: FastAPI, settings: ReceiverSettings, engine: Engine,
                   metrics: Metrics) -> None:
    """Add the routes of the module doc to ``app``."""
    operators = settings.operators

    def operator(request: Request, role: str) -> str:
        auth = request.headers.get("authorization", "")
        if not auth.startswith("Basic "):
            raise _Denied(401, "operator sign-in required")
        try:
            user, _, token = base64.b64decode(auth[6:], validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            raise _Denied(401, "malformed Basic credentials") from None
        op = operators.get(user)
        presented = hash_token(token)
        if op is None or not hmac.compare_digest(op.token, presented):
            raise _Denied(401, "unknown operator or wrong token")
        if role not in op.roles:
            raise _Denied(403, f"operator {user} lacks the role {role!r}")
        return user

    @app.exception_handler(_Denied)
    async def _denied(_request: Request, exc: _Denied) -> Response:
        headers = {"WWW-Authenticate": 'Basic realm="fleet"'} if exc.status == 401 else None
        return JSONResponse({"error": "unauthorized" if exc.status == 401 else "forbidden",
                             "detail": exc.detail}, status_code=exc.status, headers=headers)

    @app.get("/fleet.json")
    async def fleet_json(request: Request) -> dict[str, Any]:
        """The fleet view's data."""
        operator(request, "fleet")
        return {"time": time.time(), "aircraft": await run_in_threadpool(fleet_rows, engine)}

    @app.get("/fleet", response_class=HTMLResponse)
    async def fleet_page(request: Request) -> HTMLResponse:
        """The fleet view."""
        user = operator(request, "fleet")
        rows = await run_in_threadpool(fleet_rows, engine)
        return HTMLResponse(render(rows, user, time.time()))

    async def _csv_export(request: Request, day: str,
                          rows: Callable[[Engine, dt.date], Iterable[str]],
                          name: str) -> StreamingResponse:
        """``rows`` of one UTC ``day`` (YYYY-MM-DD, else 400) as a CSV attachment (role export)."""
        operator(request, "export")
        try:
            d = dt.date.fromisoformat(day)
        except ValueError:
            raise _Denied(400, f"day {day[:20]!r} is not YYYY-MM-DD") from None
        return StreamingResponse(
            iter(await run_in_threadpool(lambda: list(rows(engine, d)))),
            media_type="text/csv",
            headers={"Content-Disposition": f'attachment; filename="{name}-{d}.csv"'})

    @app.get("/fleet/export/{day}.csv")
    async def export(request: Request, day: str) -> StreamingResponse:
        """One UTC day's orders, usage and summaries as CSV."""
        return await _csv_export(request, day, export_day, "fleet")

    @app.get("/fleet/export/{day}/flights.csv")
    async def export_flight_totals(request: Request, day: str) -> StreamingResponse:
        """Orders and usage totals of the flights that started on one UTC day, as CSV."""
        return await _csv_export(request, day, export_flights, "flights")

    @app.get("/metrics")
    async def prometheus(request: Request) -> Response:
        """This receiver's counters, Prometheus text format (role ``metrics``)."""
        operator(request, "metrics")
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)


_CSS = """body{font:14px system-ui,sans-serif;margin:1.5em;color:#1b2430}
h1{font-size:20px}table{border-collapse:collapse;width:100%}
th,td{border-bottom:1px solid #d8dde3;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#eef2f6}.green{color:#11772e}.amber{color:#a86400}.red{color:#b3141b;font-weight:600}
.stale{color:#b3141b}.small{font-size:12px;color:#4b5563}"""


def _age(t: float | None, now: float) -> str:
    if t is None:
        return "never"
    s = max(0.0, now - t)
    return f"{s:.0f} s ago" if s < 120 else f"{s / 60:.0f} min ago" if s < 7200 else \
        f"{s / 3600:.1f} h ago"


def render(rows: list[dict[str, Any]], user: str, now: float) -> str:
    """The fleet view's HTML."""
    e = html.escape
    out = [f"<!doctype html><html><head><meta charset=utf-8><title>Fleet</title>"
           f"<style>{_CSS}</style></head><body><h1>Fleet: {len(rows)} aircraft</h1>"
           f"<p class=small>signed in as {e(user)}; "
           f"{sum(sum(r['backlog'].values()) for r in rows):,} records queued on board; "
           f"{sum(r['records'] for r in rows):,} received</p>"
           "<table id=fleet><thead><tr><th>Aircraft</th><th>Last contact</th>"
           "<th>Backlog</th><th>Streams (watermark, gaps)</th><th>BITE</th>"
           "<th>Software</th><th>Content</th><th>Config applied</th>"
           "<th>Orders / usage per flight</th></tr></thead><tbody>"]
    for r in rows:
        backlog = ", ".join(f"{e(s)} {n:,}" for s, n in sorted(r["backlog"].items()) if n) or "0"
        streams = "<br>".join(
            f"{e(s)} {v['watermark']:,}" + (f" <span class=red>{v['gaps']} gaps "
                                             f"({v['gap_records']:,})</span>" if v["gaps"] else "")
            for s, v in sorted(r["streams"].items()))
        bite = " ".join(f"<span class={e(v) if v in ('green', 'amber', 'red') else 'small'}>"
                        f"{e(k)}</span>" for k, v in sorted(r["bite"].items())) or "-"
        cfg = r["downlink"].get("config")
        config = ("-" if not cfg else
                  f"v{cfg['applied_version']} / v{cfg['published']}"
                  + (f" <span class=small>({e(str(cfg['applied_mode']))})</span>"
                     if cfg.get("applied_mode") else ""))
        g = r["ground"]
        totals = "<br>".join(
            [f"{e(f['flight'])}{' (in flight)' if f['end'] is None else ''}: "
             f"{f['orders']:,} / {f['usage']:,}" for f in r["flights"][-3:]]
            + ([f"ground: {g['orders']:,} / {g['usage']:,}"] if any(g.values()) else [])) or "-"
        stale = " class=stale" if now - r["last_contact"] > 86400 else ""
        out.append(f"<tr data-aircraft='{e(r['aircraft'])}'><td>{e(r['aircraft'])}</td>"
                   f"<td{stale}>{_age(r['last_contact'], now)}</td><td>{backlog}</td>"
                   f"<td class=small>{streams}</td><td>{bite}</td>"
                   f"<td>{e(r['software'] or '-')}</td><td>{e(r['content'] or '-')}</td>"
                   f"<td>{config}</td><td class=small>{totals}</td></tr>")
    out.append("</tbody></table></body></html>")
    return "".join(out)

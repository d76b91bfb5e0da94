"""The receiver's HTTP API (FastAPI): ``create_app(settings, store)``.

Routes (a signed request, see :mod:`.identity`, or the legacy ``Authorization: Bearer <aircraft
token>`` on all but health):

- ``POST /v1/batches``: a batch (``Content-Type: application/json``, ``Content-Encoding: zstd``,
  ``Idempotency-Key: <batch id>``). 200 with the answer of :meth:`BatchStore.apply`; 400
  ``malformed``; 401 ``unauthorized`` (no or unknown token, bad signature) or
  ``unknown_aircraft`` (no such key registered); 403 ``key_revoked`` or ``aircraft_mismatch``;
  409 ``batch_id_reused``;
  413 ``too_large``; 415 ``unsupported``; 503 when the database cannot be reached.
- ``GET /v1/watermarks``: ``{"aircraft", "watermarks": {stream: seq}, "time", "downlink": [...]}``
  (the aircraft's probe and its resume point; ``downlink``: the signed documents it has not
  applied yet, :mod:`.downlink`).
- ``POST /v1/downlink/ack``: ``{"kind", "version", "status", "mode", "detail"}`` (JSON): the
  aircraft applied, deferred or refused a document. 200 with its state; 400 ``malformed``.
- ``GET /v1/health``: ``{"status": "ok"}`` once the database answers (for load balancers).

Every error body is ``{"error": CODE, "detail": TEXT}``. (No ``from __future__ import
annotations`` here: FastAPI must see the dependency closures' annotations as objects.)
"""

import hashlib
import hmac
import json
import logging
import time
from typing import Annotated, Any

from fastapi import FastAPI, Header, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from . import __version__
from .downlink import Downlink, load_ground_key
from .errors import AuthRefused, BatchRejected
from .identity import KeyRing
from .ops import Metrics, add_ops_routes
from .settings import ReceiverSettings, hash_token
from .store import BatchStore
from .wire import decode_body

__all__ = ["ApiError", "create_app"]

log = logging.getLogger(__name__)

_STATUS = {"malformed": 400, "unauthorized": 401, "unknown_aircraft": 401, "key_revoked": 403,
           "aircraft_mismatch": 403,
           "batch_id_reused": 409, "too_large": 413, "unsupported": 415, "unavailable": 503}


class ApiError(Exception):
    """An error answer: ``code`` (see the module doc) and ``detail``."""

    def __init__(self, code: str, detail: str) -> None:
        """Keep the code and detail for the JSON error body."""
        super().__init__(detail)
        self.code = code
        self.detail = detail


def create_app(settings: ReceiverSettings, store: BatchStore) -> FastAPI:
    """Build the app over ``store``; keys in its database, tokens and limits from ``settings``."""
    index = settings.token_index()
    ring = KeyRing(store.engine, settings.signature_max_skew_s)
    downlink = Downlink(store.engine, load_ground_key(settings.downlink_key_file)
                        if settings.downlink_key_file else None)
    app = FastAPI(title="Ground receiver", version=__version__, docs_url=None, redoc_url=None)
    metrics = Metrics()
    add_ops_routes(app, settings, store.engine, metrics)

    @app.exception_handler(ApiError)
    async def _api_error(_request: Request, exc: ApiError) -> JSONResponse:
        metrics.refused.labels(exc.code).inc()
        headers = ({"WWW-Authenticate": "Signature, Bearer"}
                   if _STATUS[exc.code] == 401 else None)
        return JSONResponse({"error": exc.code, "detail": exc.detail},
                            status_code=_STATUS[exc.code], headers=headers)

    def by_token(authorization: str) -> str:
        """The aircraft whose legacy bearer token is presented (401 otherwise)."""
        presented = hash_token(authorization[7:].strip())
        for h, ac in index.items():  # constant time per entry; hashes never leak the token
            if hmac.compare_digest(h, presented):
                return ac
        raise ApiError("unauthorized", "unknown aircraft token")

    async def authenticate(request: Request, body: bytes | None,
                           seen: dict[Any, Any] | None = None) -> str:
        """The calling aircraft: its signature checked against ``aircraft_keys``, or its token.

        ``body`` None: everything but the signature (checked again with the body once read).

        Raises ApiError ``unauthorized``, ``unknown_aircraft``, ``key_revoked``, ``unavailable``.
        """
        authorization = request.headers.get("authorization")
        if "x-signature" not in request.headers and authorization \
                and authorization.startswith("Bearer "):
            return by_token(authorization)
        try:
            return await run_in_threadpool(ring.verify, request.method, request.url.path,
                                           request.headers, body, None, seen)
        except AuthRefused as e:
            raise ApiError(e.code, e.detail) from e
        except OperationalError as e:
            raise ApiError("unavailable", f"database unreachable: {e.orig}") from e

    @app.get("/v1/health")
    async def health() -> dict[str, Any]:
        """Liveness with a database round trip."""
        def ping() -> None:
            with store.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        try:
            await run_in_threadpool(ping)
        except OperationalError as e:
            raise ApiError("unavailable", f"database unreachable: {e.orig}") from e
        return {"status": "ok", "version": __version__}

    @app.get("/v1/watermarks")
    async def get_watermarks(request: Request) -> dict[str, Any]:
        """Every stream's acknowledged watermark for the calling aircraft."""
        ac = await authenticate(request, b"")
        try:
            wm = await run_in_threadpool(store.watermarks, ac)
            docs = await run_in_threadpool(downlink.pending, ac)
        except OperationalError as e:
            raise ApiError("unavailable", f"database unreachable: {e.orig}") from e
        return {"aircraft": ac, "watermarks": wm, "time": time.time(), "downlink": docs}

    @app.post("/v1/downlink/ack")
    async def downlink_ack(request: Request) -> dict[str, Any]:
        """The aircraft's acknowledgement of a downlink document."""
        seen: dict[Any, Any] = {}
        await authenticate(request, None, seen)
        body = await request.body()
        if len(body) > 4096:
            raise ApiError("too_large", "an ack is at most 4096 bytes")
        ac = await authenticate(request, body, seen)
        try:
            doc = json.loads(body)
            if not isinstance(doc, dict):
                raise ValueError("an ack is a JSON object")
            state = await run_in_threadpool(downlink.ack, ac, doc)
        except (ValueError, UnicodeDecodeError) as e:
            raise ApiError("malformed", str(e)) from e
        except OperationalError as e:
            raise ApiError("unavailable", f"database unreachable: {e.orig}") from e
        metrics.downlink_acks.labels(str(doc.get("status"))).inc()
        log.info("downlink %s v%s %s by %s", doc.get("kind"), doc.get("version"),
                 doc.get("status"), ac)
        return {"aircraft": ac, "kind": doc["kind"], **state}

    @app.post("/v1/batches")
    async def post_batch(request: Request,
                         content_type: Annotated[str | None, Header()] = None,
                         content_encoding: Annotated[str | None, Header()] = None,
                         content_length: Annotated[int | None, Header()] = None,
                         idempotency_key: Annotated[str | None, Header()] = None,
                         ) -> dict[str, Any]:
        """Take one batch: decode, check, apply in one transaction, answer the watermarks."""
        if content_type is None or content_type.split(";")[0].strip() != "application/json":
            raise ApiError("unsupported", "Content-Type must be application/json")
        seen: dict[Any, Any] = {}  # the key row, read once for both checks
        await authenticate(request, None, seen)  # unknown or revoked: refused before the body
        limit = settings.max_body_bytes
        if content_length is not None and content_length > limit:
            raise ApiError("too_large", f"body of {content_length} bytes; at most {limit}")
        chunks = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise ApiError("too_large", f"body exceeds {limit} bytes")
            chunks.append(chunk)
        body = b"".join(chunks)
        ac = await authenticate(request, body, seen)
        try:
            batch = await run_in_threadpool(decode_body, body, content_encoding,
                                            max_batch_bytes=settings.max_batch_bytes,
                                            max_records=settings.max_records)
        except BatchRejected as e:
            raise ApiError(e.code, e.detail) from e
        if idempotency_key is not None and idempotency_key != batch.batch_id:
            raise ApiError("malformed", "Idempotency-Key header differs from the batch_id")
        sha = hashlib.sha256(body).hexdigest()
        t0 = time.monotonic()
        try:
            answer = await run_in_threadpool(store.apply, ac, batch, sha, len(body))
        except BatchRejected as e:
            raise ApiError(e.code, e.detail) from e
        except OperationalError as e:
            raise ApiError("unavailable", f"database unreachable: {e.orig}") from e
        metrics.latency.observe(time.monotonic() - t0)
        metrics.batches.labels("replayed" if answer["duplicate"] else "applied").inc()
        metrics.records.inc(answer["applied"])
        metrics.duplicates.inc(answer["duplicates"])
        metrics.bytes.inc(len(body))
        log.info("batch %s from %s: %d records, %d applied, %d duplicates%s", batch.batch_id, ac,
                 batch.record_count, answer["applied"], answer["duplicates"],
                 " (replayed)" if answer["duplicate"] else "")
        return answer

    return app

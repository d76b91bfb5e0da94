"""The intake routes (admin port, under ``/admin/v1/intake``): reads need crew, actions maintenance.

- ``POST /intake/uploads`` body = the signed ``metadata.json`` -> 201 status (or 200 when it
  resumes an existing upload); 422 ``{"detail": reason}`` when refused; 409 in FLIGHT.
- ``PUT /intake/uploads/{id}?offset=N`` raw body = payload bytes from ``N`` -> 200 status.
  409 ``{"detail", "received"}`` on a wrong offset (resume from ``received``), when paused or
  while another connection writes the upload; 408 when the body stalled longer than the idle
  timeout (the connection is closed; resume from ``received``); 507 when the chunk would not fit
  beside the journal's reserve (the bytes received before are kept).
- ``GET /intake/uploads/{id}`` -> status ``{id, kind, name, version, length, received, state,
  reason, keyids, paused, chunk_bytes}``; ``GET /intake/uploads`` -> the newest uploads.
  An unknown upload id gives 404 (the domain's UnknownUpload).
- ``POST /intake/uploads/{id}/finalize`` -> verify + stage (507 with the reason when the unpacked
  files would not fit beside the journal's reserve; nothing is left unpacked and the upload stays
  ``complete``; 422 when refused); ``POST .../activate`` -> switch;
  ``DELETE /intake/uploads/{id}`` -> abort.
- ``GET /intake/installed`` -> ``{kind: {version, bundle_id, name, keyids, installed_at,
  detail}}`` plus ``mode`` and whether intake is open.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse
from starlette.requests import ClientDisconnect

from ...errors import (
    BundleRefused,
    InsufficientStorage,
    IntakeError,
    PolicyError,
    UnknownUpload,
    UploadStalled,
)
from ...intake.service import IntakeService
from ..validation import BadJSON, strict_json
from .app import require
from .auth import AdminAuth, Principal, Role

__all__ = ["make_router"]

async def _error(e: Exception, service: IntakeService, bid: str | None = None) -> JSONResponse:
    """The answer to a domain error, chosen by its type (never by its text).

    UnknownUpload 404, BundleRefused 422, InsufficientStorage 507, UploadStalled 408 (and the
    connection closed), PolicyError 409 (``paused``), other IntakeError 409; with the upload's
    ``received`` and ``state`` when ``bid`` names one. A 408 closes the connection; after a
    507 the server discards the rest of an unread body, so the client reads the answer cleanly.
    """
    body: dict[str, Any] = {"detail": str(e)}
    if bid is not None and not isinstance(e, UnknownUpload):
        try:
            st = await service.get_status(bid)
            body["received"] = st["received"]
            body["state"] = st["state"]
        except UnknownUpload:
            pass
    if isinstance(e, UnknownUpload):
        return JSONResponse(body, 404)
    if isinstance(e, BundleRefused):
        return JSONResponse(body, 422)
    if isinstance(e, InsufficientStorage):
        return JSONResponse(body, 507)
    if isinstance(e, UploadStalled):
        return JSONResponse(body, 408, headers={"Connection": "close"})
    if isinstance(e, PolicyError):
        body["paused"] = True
    return JSONResponse(body, 409)


_METADATA_BODY = {"required": True, "content": {"application/json": {"schema": {
    "type": "object", "description": "the bundle's signed metadata (envelope)"}}}}


def make_router(service: IntakeService, auth: AdminAuth) -> APIRouter:
    """The router over ``service``; actions need the maintenance role of ``auth``."""
    r = APIRouter(prefix="/intake", tags=["hangar intake"])
    maintenance = Depends(require(auth, Role.MAINTENANCE))

    @r.post("/uploads", openapi_extra={"requestBody": _METADATA_BODY},
            responses={422: {"description": "not a JSON object, or a refused bundle"}})
    async def begin(request: Request, who: Principal = maintenance) -> JSONResponse:
        """Open (or resume) the upload of a bundle from its signed metadata (a JSON object).

        The token is checked before the body is read (the body is read here, not by FastAPI,
        which would read it first): a request without the maintenance role costs no body.
        """
        try:
            metadata = strict_json(await request.body())
        except BadJSON as e:
            return JSONResponse({"detail": str(e)}, 422)
        if not isinstance(metadata, dict):
            return JSONResponse({"detail": "the metadata must be a JSON object"}, 422)
        try:
            st = await service.begin(metadata, who.user)
        except (BundleRefused, PolicyError, IntakeError) as e:
            return await _error(e, service)
        return JSONResponse(st, 201 if st["received"] == 0 else 200)

    @r.get("/uploads")
    async def uploads() -> list[dict[str, Any]]:
        """The newest uploads."""
        return await service.get_uploads()

    @r.get("/uploads/{bid}")
    async def upload_status(bid: str) -> JSONResponse:
        """One upload's status."""
        try:
            return JSONResponse(await service.get_status(bid))
        except IntakeError as e:
            return await _error(e, service)

    @r.put("/uploads/{bid}")
    async def put_bytes(bid: str, request: Request, offset: Annotated[int, Query(ge=0)],
                        who: Principal = maintenance) -> JSONResponse:
        """Store payload bytes at ``offset`` (the resume offset)."""
        async def body() -> AsyncIterator[bytes]:
            try:
                async for piece in request.stream():
                    if piece:
                        yield piece
            except ClientDisconnect:
                return
        try:
            return JSONResponse(await service.write(bid, offset, body()))
        except (BundleRefused, PolicyError, IntakeError) as e:
            return await _error(e, service, bid)

    @r.post("/uploads/{bid}/finalize")
    async def finalize(bid: str, who: Principal = maintenance) -> JSONResponse:
        """Verify the payload and stage it."""
        try:
            return JSONResponse(await service.finalize(bid))
        except (BundleRefused, PolicyError, IntakeError) as e:
            return await _error(e, service, bid)

    @r.post("/uploads/{bid}/activate")
    async def activate(bid: str, who: Principal = maintenance) -> JSONResponse:
        """Switch the staged bundle in."""
        try:
            return JSONResponse(await service.activate(bid, who.user))
        except (BundleRefused, PolicyError, IntakeError) as e:
            return await _error(e, service, bid)

    @r.delete("/uploads/{bid}")
    async def abort(bid: str, who: Principal = maintenance) -> JSONResponse:
        """Abandon an upload."""
        try:
            await service.abort(bid)
        except IntakeError as e:
            return await _error(e, service, bid)
        return JSONResponse(await service.get_status(bid))

    @r.get("/installed")
    async def installed() -> dict[str, Any]:
        """What the aircraft has installed, per kind, and whether intake is open now."""
        mode = service.mode()
        return {"mode": str(mode), "intake_open": service.policy[mode].hangar_intake,
                "installed": await service.get_installed()}

    return r

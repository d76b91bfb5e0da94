"""The cabin network's admin routes (included under ``/admin/v1`` with the crew role).

Reads (crew): ``GET /cabin/status`` (BITE), ``/cabin/devices`` (each access point's state, last
poll, desired vs actual, busy holder, queued jobs), ``/cabin/devices/{name}`` (one, with its recent
jobs), ``/cabin/jobs`` (history, newest first; filters ``device``, ``state``, ``before``),
``/cabin/busy`` (busy holders: device, job, requested by, since, expected end — epoch s).

Actions (maintenance role), each queued as a job and answered at once: ``POST
/cabin/devices/{name}/apply`` (a partial configuration; reconciliation holds off the device for
``hold_s``) and ``POST /cabin/devices/{name}/reboot``. 202 with the new job, or 200 with the
existing one when ``idempotency_key`` was seen before; 404 unknown device; 409 the key names
another job; 422 an invalid configuration. The admin app journals every action (audit).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, status
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from ...cabin.manager import CabinNetwork
from ...cabin.store import ACTIVE, TERMINAL, KeyConflict
from ...settings import WapConfigSettings
from .app import require
from .auth import AdminAuth, Principal, Role

__all__ = ["make_router"]

_KEY = Field(None, min_length=1, max_length=120, pattern=r"^[A-Za-z0-9_.:-]+$")


class ApplyRequest(BaseModel):
    """A partial configuration to apply, an optional idempotency key and reconcile hold (s)."""

    model_config = {"extra": "forbid"}

    config: WapConfigSettings
    idempotency_key: Annotated[str | None, _KEY] = None
    hold_s: Annotated[float | None, Field(None, ge=0, le=86400)] = None


class RebootRequest(BaseModel):
    """An optional idempotency key."""

    model_config = {"extra": "forbid"}

    idempotency_key: Annotated[str | None, _KEY] = None


def make_router(service: CabinNetwork, auth: AdminAuth) -> APIRouter:
    """The router over ``service``; actions need the maintenance role of ``auth``."""
    r = APIRouter(prefix="/cabin", tags=["cabin network"])
    maintenance = Depends(require(auth, Role.MAINTENANCE))

    def known(name: str) -> None:
        if name not in service.devices:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no access point {name!r}")

    @r.get("/status")
    async def cabin_status() -> dict[str, Any]:
        """BITE of the cabin network: state (green/amber/red), reason, counts."""
        return service.status()

    @r.get("/devices")
    async def devices() -> dict[str, Any]:
        """Every access point: state, last poll, desired vs actual, busy holder, queued jobs."""
        return {"mode": str(service.mode), "devices": service.devices_view()}

    @r.get("/devices/{name}")
    async def device(name: str) -> dict[str, Any]:
        """One access point with its 20 most recent jobs."""
        known(name)
        jobs = await run_in_threadpool(service.store.query, name, None, 20)
        return {**service.device_view(service.devices[name]), "jobs": jobs}

    @r.get("/jobs")
    async def jobs(device: Annotated[str | None, Query(max_length=64)] = None,
                   state: Annotated[str | None, Query(max_length=16)] = None,
                   limit: Annotated[int, Query(ge=1, le=1000)] = 100,
                   before: Annotated[int | None, Query(ge=1)] = None) -> dict[str, Any]:
        """Jobs newest first (states: queued, running, done, failed, stale, needs_attention)."""
        if state is not None and state not in (*ACTIVE, *TERMINAL):
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, f"unknown state {state!r}")
        rows = await run_in_threadpool(service.store.query, device, state, limit, before)
        return {"jobs": rows}

    @r.get("/busy")
    async def busy() -> dict[str, Any]:
        """Busy holders: which job holds which device, since when, expected end (epoch s)."""
        return {"busy": service.busy_view(), "active_jobs": service.active_jobs()}

    async def queue(name: str, kind: str, spec: dict[str, Any] | None, who: Principal,
                    key: str | None, hold_s: float | None = None) -> JSONResponse:
        known(name)
        try:
            job, created = await service.submit(name, kind, spec, who.user, key, hold_s)
        except KeyConflict as e:
            raise HTTPException(status.HTTP_409_CONFLICT, str(e)) from e
        except ValueError as e:
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(e)) from e
        return JSONResponse({"created": created, "job": job.as_dict()},
                            status_code=status.HTTP_202_ACCEPTED if created else status.HTTP_200_OK)

    @r.post("/devices/{name}/apply", status_code=status.HTTP_202_ACCEPTED)
    async def apply(name: str, body: ApplyRequest, who: Principal = maintenance) -> JSONResponse:
        """Queue a configuration change (confirm-or-revert) on one access point."""
        return await queue(name, "apply", body.config.model_dump(exclude_none=True), who,
                           body.idempotency_key, body.hold_s)

    @r.post("/devices/{name}/reboot", status_code=status.HTTP_202_ACCEPTED)
    async def reboot(name: str, body: RebootRequest | None = None,
                     who: Principal = maintenance) -> JSONResponse:
        """Queue a reboot of one access point."""
        return await queue(name, "reboot", None, who, body.idempotency_key if body else None)

    return r

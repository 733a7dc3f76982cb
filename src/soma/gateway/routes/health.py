"""Liveness and readiness, for load balancers and orchestrators (no authentication)."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from soma.gateway.auth import services
from soma.gateway.services import Services

router = APIRouter(tags=["health"])

Svc = Annotated[Services, Depends(services)]


@router.get("/healthz", summary="The process is up")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/readyz", summary="The store answers, and the engine is connected where one is expected"
)
async def readyz(request: Request, svc: Svc) -> JSONResponse:
    checks: dict[str, str] = {}
    try:
        await asyncio.to_thread(svc.store.usage_totals, "readiness-probe")
        checks["store"] = "ok"
    except Exception as exc:  # any failure means not ready; the probe reports which part
        checks["store"] = f"failing: {type(exc).__name__}"
    if request.app.state.engine_expected:
        checks["engine"] = "ok" if svc.temporal is not None else "not connected"
    ready = all(v == "ok" for v in checks.values())
    return JSONResponse({"ready": ready, "checks": checks}, status_code=200 if ready else 503)

"""The daemon's wiring of the cabin network (:mod:`appliance.cabinnet`), when ``[cabinnet]`` is on.

:func:`build_cabinnet` before the passenger content (the portal asks the gate who accepted);
:func:`start_cabinnet` after the passenger port: the RFC 8908 API (the passenger app) over HTTPS on
``https_port``, then the gate, dnsmasq and the lease watch, the mode subscription and BITE.
"""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI
from prometheus_client.registry import Collector

from ..avionics.chain import AvionicsChain
from ..cabinnet.service import CabinNet, GateCollector
from ..errors import StartupError
from ..modes.policy import PolicyTable
from ..settings import Settings
from ..store.writer import Writer
from .bite import Bite
from .edge import WebPort, web_config

__all__ = ["build_cabinnet", "cabinnet_collectors", "portal_urls", "start_cabinnet"]


def build_cabinnet(settings: Settings, chain: AvionicsChain, writer: Writer, reader: Any,
                   policy: PolicyTable) -> CabinNet | None:
    """The cabin network part (not started), or None when ``[cabinnet]`` is off."""
    s = settings.cabinnet
    if not s.enabled:
        return None
    return CabinNet(s, settings.data_dir, writer, reader, policy, lambda: chain.mode, chain.utc,
                    settings.content.captive_accept_s, settings.admin.port)


def portal_urls(settings: Settings) -> tuple[str | None, str | None]:
    """(where probes redirect, venue-info-url): the portal by name with the cabin network on."""
    s = settings.cabinnet
    if not s.enabled:
        return None, None
    path = settings.content.portal_url
    url = path if "://" in path else f"http://{s.portal_name}{path}"
    return url, s.venue_info_url


async def start_cabinnet(net: CabinNet, settings: Settings, app: FastAPI, chain: AvionicsChain,
                         bite: Bite, media_port: int | None,
                         serve: Callable[[str, WebPort], Awaitable[None]],
                         stack: contextlib.AsyncExitStack) -> None:
    """Start the HTTPS port of the captive API (with TLS configured), then the cabin network.

    Teardowns go on ``stack``. Raises StartupError for a bad certificate or key, or a gate that
    nftables refuses.
    """
    s = settings.cabinnet
    if s.tls_cert is not None and s.tls_key is not None:
        try:  # a clear error at start rather than uvicorn's exit in a task
            ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(s.tls_cert,
                                                                                 s.tls_key)
        except (OSError, ssl.SSLError) as e:
            raise StartupError(f"cabinnet: cannot load tls_cert/tls_key: {e}") from e
        web = web_config(app, settings.passenger.host, s.https_port, settings.edge.passenger,
                         http=settings.edge.http)
        web.config.ssl_certfile = str(s.tls_cert)
        web.config.ssl_keyfile = str(s.tls_key)
        await serve("captive", web)
    try:
        await net.start(settings.passenger.port, media_port)
    except Exception as e:
        await net.stop()
        raise StartupError(f"cabinnet: {e}") from e
    stack.push_async_callback(net.stop)
    stack.callback(chain.subscribe(net.on_mode))
    bite.add("passenger_network", net.status)


def cabinnet_collectors(net: CabinNet | None) -> list[Collector]:
    """The cabin network's metrics collectors (none when it is off)."""
    return [] if net is None else [GateCollector(net)]

"""Builds the avionics bus sources from the settings: the serial card, CAN, or both together.

With both enabled, each source's time goes onto the chain's time base through one
:class:`~appliance.avionics.timebase.TimeBase`, and the chain's redundancy agent votes and
cross-checks them (``appliance.avionics.redundancy``). Every source's counters live in the chain's
``decoders`` (so BITE, the signals page and the metrics see them all).
"""

from __future__ import annotations

from collections.abc import Callable

from firmware_bridge.frame import RawFrame

from ..avionics.can_source import CanReader, open_bus
from ..avionics.cardtime import CardTimeCheck, CardTimeConfig
from ..avionics.chain import AvionicsChain
from ..avionics.params import Parameter
from ..avionics.serial_source import SerialCardReader
from ..avionics.source import Source
from ..avionics.timebase import TimeBase
from ..settings import Settings

__all__ = ["build_sources"]


def build_sources(s: Settings, chain: AvionicsChain) -> tuple[list[Source], list[Callable[[], None]]]:
    """The enabled sources (not started) and what to call at shutdown (the CAN bus's close).

    Raises SourceError if the CAN bus or its DBC cannot be opened.
    """
    sources: list[Source] = []
    closers: list[Callable[[], None]] = []
    timebase = TimeBase(lambda: chain.store.now) if s.serial.enabled and s.can.enabled else None
    chain.timebase = timebase
    if s.serial.enabled:
        name = s.serial.channel_name
        decoder = chain.decoder(name)

        def on_frames(frames: list[RawFrame]) -> None:
            if timebase is None:
                chain.feed_frames(frames, name)
            elif frames:
                chain.feed(timebase.align(name, decoder.decode(frames)))
        sources.append(SerialCardReader(
            s.serial.port, on_frames, decoder.stats, baudrate=s.serial.baudrate,
            reconnect_s=s.serial.reconnect_s, name=name, on_lost=chain.store.expire_source,
            card_time=CardTimeCheck(CardTimeConfig(
                max_rate=s.serial.max_card_time_rate, slack_s=s.serial.card_time_slack_s,
                resync_s=s.serial.card_time_resync_s))))
    if s.can.enabled:
        cname = s.can.channel_name

        def on_params(params: list[Parameter]) -> None:
            chain.feed(params if timebase is None else timebase.align(cname, params))
        bus = open_bus(s.can)
        closers.append(bus.shutdown)  # the reader never closes the bus it was given
        sources.append(CanReader(bus, on_params, chain.decoder(cname).stats, name=cname,
                                 dbc_path=s.can.dbc, time_rate=s.can.time_rate, table=chain.table,
                                 on_lost=chain.store.expire_source,
                                 time_source=s.can.time_source, profile=s.can.profile))
    return sources, closers

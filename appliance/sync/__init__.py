"""Outbound sync: every outbox record reaches the ground once, in order per stream.

Parts (each small, each tested on its own):

- :mod:`.queue`: the outbox as the uplink reads it (items, statistics) and acknowledgements;
- :mod:`.budget`: the outbox's disk budget and its stated drop order;
- :mod:`.batch`: batches as zstd-compressed JSON (the receiver's wire format v1);
- :mod:`.client`: the receiver's HTTP API (the only part that knows HTTP status codes; it maps
  them to the errors of :mod:`.errors`); :mod:`.link`: link state; :mod:`.policy`: which
  streams a link carries in a mode, and the per-flight-hour byte budget (kept across restarts
  by :mod:`.link_budget`);
- :mod:`.uplink`: the link loop and its sessions: resume from the receiver's watermark, retries;
  :mod:`.pipeline`: batches built, sent (pipelined) and acknowledged; :mod:`.streams`: cursors,
  blocked and lost streams;
- :mod:`.status`: the uplink's state (an enum), its counters and the status's shape;
- :mod:`.summaries`: the flight track and per-flight health agents;
- :mod:`.service`: :class:`SyncService`, what the daemon constructs.

The ground end is the separate ``ground_receiver`` package (``receiver/`` in the repository).
"""

from .service import SyncService

__all__ = ["SyncService"]

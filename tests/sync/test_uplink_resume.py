"""The uplink resumes from the receiver's watermark, whatever the order answers come back in.

Deterministic reproductions of what the fault run (``test_link_faults.py``) hit only under load:

- Two batches on the wire (``pipeline_depth`` 2), the second (B) reaches the receiver before the
  first (A) — A's request was retried after a receiver kill, or lost and resent. The receiver
  waits ``reorder_wait_s`` for A, then takes B with its ``usage`` part refused (``gap``: "expected
  seq N, batch continues at M; resume from the watermark"). A then goes in. The uplink used to
  take B's refusal as a block of ``usage`` for the rest of the session and reset its cursors to
  B's (stale) watermarks: with the link staying up the session never ended, and thousands of
  usage records stayed queued for good. The same happens when B's answer is lost and B is sent
  again: the receiver replays B's stored answer, refusal included.
- The receiver lost records it had acknowledged (its database went back): the aircraft deleted
  them on that acknowledgement. The loss is declared (a gap on the ground, a journal row, BITE
  red, an event in the status) and the stream goes on from the receiver's watermark instead of
  stalling.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from appliance.daemon.bite import sync_bite
from appliance.store.models import journal as journal_table
from appliance.sync import SyncService
from appliance.sync.batch import Batch
from appliance.sync.client import ReceiverClient
from appliance.sync.errors import ReceiverUnavailable
from appliance.sync.queue import apply_ack
from ground_receiver.db import batches as rx_batches
from ground_receiver.db import conflicts as rx_conflicts
from ground_receiver.db import gaps as rx_gaps

from .helpers import Journal, chain, outbox_count, running_receiver, settings


async def _drained(j: Journal, limit: float) -> bool:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if outbox_count(j.reader) == 0:
            return True
        await asyncio.sleep(0.05)
    return False


@pytest.mark.parametrize("answer_lost", [False, True], ids=["answered", "answer-lost"])
def test_a_batch_overtaking_its_predecessor_does_not_stall_the_stream(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, answer_lost: bool) -> None:
    j = Journal(tmp_path / "journal.db")
    j.fill("usage", 2000)
    j.fill("orders", 30)
    posts: list[str] = []
    usage_sent: list[tuple[str, int, int]] = []  # (batch id, first seq, last seq) per POST
    b_answered = asyncio.Event()
    b_errors: list[dict[str, Any]] = []
    original = ReceiverClient.post

    async def post(self: ReceiverClient, batch: Batch, on_sent: Any = None) -> dict[str, Any]:
        posts.append(batch.batch_id)
        n = len(posts)
        if "usage" in batch.end:
            usage_sent.append((batch.batch_id, batch.start["usage"] + 1, batch.end["usage"]))
        if n == 2:  # A: its body leaves at once, but it reaches the receiver only after B
            if on_sent is not None:
                on_sent()
            await b_answered.wait()
            return await original(self, batch, None)
        if n == 3:  # B: built after A, on the wire while A is held back
            try:
                answer = await original(self, batch, on_sent)
            finally:
                b_answered.set()
            b_errors.extend(answer["errors"])
            if answer_lost:
                raise ReceiverUnavailable("POST /v1/batches: the answer was lost")
            return answer
        return await original(self, batch, on_sent)

    monkeypatch.setattr(ReceiverClient, "post", post)

    async def scenario() -> None:
        async with running_receiver(f"sqlite:///{tmp_path}/ground.db", reorder_wait_s=0.3) as rx:
            s = settings(tmp_path, rx.url, batch_max_records=400, pipeline_depth=2,
                         probe_interval_s=0.5)
            svc = SyncService(s, j.writer, j.reader, chain())
            await svc.start()
            try:
                drained = await _drained(j, 20)
                await svc.refresh()
                st = svc.status()
            finally:
                await svc.stop()
                j.close()
            assert len(posts) >= 4, posts
            # the race happened: B went in first, its usage part refused for the hole A left
            assert [e["code"] for e in b_errors] == ["gap"], b_errors
            assert drained, (f"outbox not drained: usage {st['streams']['usage']}, "
                             f"uplink {st['uplink']}")
            assert st["streams"]["usage"]["blocked"] is None
            assert st["streams"]["usage"]["acked_seq"] == 2000
            rows = rx.rows()
            assert [q for s_, q, _ in rows if s_ == "usage"] == list(range(1, 2001))
            assert [q for s_, q, _ in rows if s_ == "orders"] == list(range(1, 31))
            with rx.engine.connect() as c:
                assert c.execute(select(rx_gaps)).first() is None
                assert c.execute(select(rx_conflicts)).first() is None
                answers = [r.response for r in c.execute(select(rx_batches.c.response))]
            assert not [a for a in answers if a["conflicts"] or a["gaps"]], answers
            # resumed from the receiver's watermark, not from B's older one: no batch but A
            # itself carried any of A's records again
            a_id, a_lo, a_hi = next(u for u in usage_sent if u[0] == posts[1])
            again = [u for u in usage_sent if u[0] != a_id and u[1] <= a_hi and u[2] >= a_lo]
            assert not again, (usage_sent, a_lo, a_hi)
            assert sync_bite(st)["state"] == "green"

    asyncio.run(scenario())


def test_records_the_ground_lost_after_acknowledging_are_declared_and_the_rest_goes(
        tmp_path: Path) -> None:
    j = Journal(tmp_path / "journal.db")
    j.fill("usage", 300)
    j.fill("orders", 40)
    # the receiver had acknowledged usage up to 120 (so the aircraft deleted 1..120), then its
    # database went back: it is empty now
    assert j.writer.submit(lambda conn: apply_ack(conn, {"usage": 120})).result() == 120

    async def scenario() -> None:
        async with running_receiver(f"sqlite:///{tmp_path}/ground.db") as rx:
            s = settings(tmp_path, rx.url, probe_interval_s=0.5)
            svc = SyncService(s, j.writer, j.reader, chain())
            await svc.start()
            try:
                drained = await _drained(j, 20)
                await svc.refresh()
                st = svc.status()
            finally:
                await svc.stop()
            assert drained, f"outbox not drained: {st['streams']['usage']}"
            rows = rx.rows()
            assert [q for s_, q, _ in rows if s_ == "usage"] == list(range(121, 301))
            assert [q for s_, q, _ in rows if s_ == "orders"] == list(range(1, 41))
            with rx.engine.connect() as c:
                got = [(g.stream, g.seq_lo, g.seq_hi, g.declared_records)
                       for g in c.execute(select(rx_gaps))]
            assert got == [("usage", 1, 120, 120)]
            assert rx.store.watermarks("F-SYNC")["usage"] == 300
            usage = st["streams"]["usage"]
            assert usage["acked_seq"] == 300 and usage["blocked"] is None
            assert usage["lost"] is not None and "1..120" in usage["lost"], usage
            assert st["streams"]["orders"]["lost"] is None
            assert "AckedRecordsLost" in [e["type"] for e in st["recent_events"]]
            bite = sync_bite(st)
            assert bite["state"] == "red" and "usage" in bite["reason"], bite
            with j.reader.connect() as c:
                rows_j = c.execute(select(journal_table).where(
                    journal_table.c.kind == "sync_lost")).all()
            assert len(rows_j) == 1 and "1..120" in rows_j[0].summary, rows_j
            assert rows_j[0].data["stream"] == "usage"

    try:
        asyncio.run(scenario())
    finally:
        j.close()


def test_sync_bite_is_red_while_a_stream_is_blocked_or_lost() -> None:
    def status(**usage: Any) -> dict[str, Any]:
        stream = {"blocked": None, "lost": None, **usage}
        return {"totals": {"budget_used": 0.01, "dropped_records": 0, "depth": 5},
                "active_link": "gatelink", "state": "idle", "streams": {"usage": stream}}

    assert sync_bite(status())["state"] == "green"
    bite = sync_bite(status(blocked="outbox lacks seq 7 of usage"))
    assert bite["state"] == "red" and "usage blocked: outbox lacks seq 7" in bite["reason"]
    bite = sync_bite(status(lost="the receiver lost usage seq 1..9"))
    assert bite["state"] == "red" and "usage: the receiver lost usage seq 1..9" in bite["reason"]

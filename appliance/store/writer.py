"""The single writer: one thread owns the write connection and commits in groups.

Callers submit a function ``fn(conn) -> T``. The thread takes everything queued (up to
``max_batch``) and runs the functions in one transaction. If one raises, the transaction is rolled
back and the group runs again with each function in its own SAVEPOINT (a failing function then
rolls back only its own work and gets its exception) — so a function may run twice and must have
no effect outside its connection. Then it commits once — one fsync for the whole group
with WAL and ``synchronous=FULL`` — and only then resolves each caller's future. So an acknowledged
write is a durable write, and many writers share the cost of one fsync (group commit).

Health (:meth:`Writer.health`, what the daemon's watchdog follows): the journal is healthy *now*
when the writer thread runs, the latest group it finished had no store failure (its commit went
through and no write in it hit an I/O error or a full disk) and no group has been running for
longer than ``stall_s``. A failure is not sticky: the next group that commits cleanly clears it.
Its history stays in :class:`WriterStats` (``faults``, first and last failure, when it cleared)
for BITE.
"""

from __future__ import annotations

import asyncio
import bisect
import concurrent.futures
import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import OperationalError

from ..errors import StoreError, WriterClosedError

__all__ = ["COMMIT_BUCKETS_S", "STALL_S", "Writer", "WriterStats"]

log = logging.getLogger(__name__)
T = TypeVar("T")
_STOP = object()


class _Retry(Exception):
    """A function failed in the shared transaction: run the group again, each in a SAVEPOINT."""


#: Upper bounds (s) of the commit-duration histogram buckets (the last bucket is +Inf).
COMMIT_BUCKETS_S = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)
#: A group running longer than this (s: its functions, the commit and its fsync) is a stalled
#: journal (a hung disk): unhealthy until it finishes.
STALL_S = 30.0


@dataclass(slots=True)
class WriterStats:
    """Commits, writes, failures, the last commit's duration (s) and a histogram of durations."""

    commits: int = 0
    writes: int = 0
    failed_writes: int = 0
    failed_commits: int = 0
    last_commit_s: float = 0.0
    max_group: int = 0
    commit_s_sum: float = 0.0
    #: Count of commits per bucket of COMMIT_BUCKETS_S, plus one for longer ones (not cumulative).
    commit_buckets: list[int] = field(default_factory=lambda: [0] * (len(COMMIT_BUCKETS_S) + 1))
    #: True while the latest finished group had a store failure (commit failed, disk full, I/O).
    failing: bool = False
    #: Groups that had a store failure, ever (the fault's history; ``failing`` is now).
    faults: int = 0
    first_fault_utc: float | None = None  #: epoch s of the first store failure
    last_fault_utc: float | None = None  #: epoch s of the latest store failure
    cleared_utc: float | None = None  #: epoch s of the clean commit that ended the latest failure
    last_fault: str = ""  #: the latest failure's message
    #: Monotonic s when the group now running started (None: idle).
    busy_since: float | None = None

    def fault(self, message: str, utc: float) -> None:
        """A group had a store failure at ``utc`` (epoch s)."""
        self.failing = True
        self.faults += 1
        if self.first_fault_utc is None:
            self.first_fault_utc = utc
        self.last_fault_utc = utc
        self.last_fault = message

    def clean(self, utc: float) -> None:
        """A group committed with no store failure at ``utc`` (epoch s): the fault, if any, cleared."""
        if self.failing:
            self.failing = False
            self.cleared_utc = utc

    def observe(self, seconds: float) -> None:
        """Record one commit's duration."""
        self.last_commit_s = seconds
        self.commit_s_sum += seconds
        self.commit_buckets[bisect.bisect_left(COMMIT_BUCKETS_S, seconds)] += 1


class Writer:
    """The one thread that writes to the journal database."""

    def __init__(self, engine: Engine, max_batch: int = 512, stall_s: float = STALL_S) -> None:
        """Write through ``engine``; at most ``max_batch`` functions share one commit.

        ``stall_s``: a group running longer than this (s) makes :meth:`health` unhealthy.
        """
        self.engine = engine
        self.max_batch = max_batch
        self.stall_s = stall_s
        self.stats = WriterStats()
        self._q: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._closed = False

    def start(self) -> None:
        """Start the writer thread."""
        self._thread = threading.Thread(target=self._run, name="journal-writer", daemon=True)
        self._thread.start()

    def submit(self, fn: Callable[[Connection], T]) -> concurrent.futures.Future[T]:
        """Queue ``fn``; the future resolves after the commit that made it durable.

        Raises WriterClosedError after :meth:`stop`.
        """
        if self._closed:
            raise WriterClosedError("the journal writer is stopped")
        fut: concurrent.futures.Future[T] = concurrent.futures.Future()
        self._q.put((fn, fut))
        return fut

    async def run(self, fn: Callable[[Connection], T]) -> T:
        """Submit ``fn`` and await its durable result without blocking the event loop."""
        return await asyncio.wrap_future(self.submit(fn))

    def stop(self, timeout: float = 10.0) -> None:
        """Finish what is queued, then stop the thread (bounded by ``timeout`` seconds)."""
        if self._closed:
            return
        self._closed = True
        self._q.put(_STOP)
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.error("journal writer did not stop within %.1f s", timeout)

    def health(self, now: float | None = None) -> tuple[bool, str]:
        """Whether the journal is healthy now (see the module doc) and why not.

        ``now`` is monotonic seconds (default: now). Returns ``(True, "")`` or ``(False, reason)``.
        """
        st = self.stats
        if self._thread is not None and not self._thread.is_alive() and not self._closed:
            return False, "journal writer thread is not running"
        if st.failing:
            return False, f"latest journal commit failed: {st.last_fault}"
        busy = st.busy_since
        if busy is not None:
            running = (time.monotonic() if now is None else now) - busy
            if running > self.stall_s:
                return False, f"journal commit running for {running:.0f} s"
        return True, ""

    def _run(self) -> None:
        with self.engine.connect() as conn:
            stopping = False
            while not stopping:
                batch = [self._q.get()]
                while len(batch) < self.max_batch:
                    try:
                        batch.append(self._q.get_nowait())
                    except queue.Empty:
                        break
                if _STOP in batch:
                    stopping = True
                    batch = [b for b in batch if b is not _STOP]
                if batch:
                    self._commit_group(conn, batch)

    def _run_group(self, conn: Connection, live: list[Any], isolate: bool) -> list[Any]:
        """Run ``live`` in one transaction; with ``isolate`` each in its own SAVEPOINT.

        Without ``isolate`` the first failure aborts the group (raises _Retry): the transaction is
        rolled back and the caller runs the group again isolated.
        """
        results: list[tuple[concurrent.futures.Future[Any], bool, Any]] = []
        with conn.begin():
            for fn, fut in live:
                if not isolate:
                    try:
                        results.append((fut, True, fn(conn)))
                    except Exception as e:  # rerun the group isolated
                        raise _Retry from e
                    continue
                try:
                    with conn.begin_nested():
                        results.append((fut, True, fn(conn)))
                except OperationalError as e:  # disk full, I/O error: the store's problem
                    err = StoreError(f"journal write failed: {e.orig}")
                    err.__cause__ = e
                    results.append((fut, False, err))
                except Exception as e:  # noqa: BLE001 - handed back to that caller
                    results.append((fut, False, e))
        return results

    @staticmethod
    def _abandon(conn: Connection) -> None:
        """After a failed COMMIT: make sure no transaction stays open on the connection.

        SQLite keeps the transaction open when COMMIT itself fails (a deferred foreign key, a
        busy database); left so, every later BEGIN would fail and the fault would never clear.
        """
        with contextlib.suppress(Exception):
            conn.rollback()
        with contextlib.suppress(Exception):
            raw = conn.connection.dbapi_connection
            if raw is not None and getattr(raw, "in_transaction", False):
                raw.execute("ROLLBACK")

    def _commit_group(self, conn: Connection, batch: list[Any]) -> None:
        live = [(fn, fut) for fn, fut in batch if fut.set_running_or_notify_cancel()]
        if not live:
            return
        t0 = time.perf_counter()
        self.stats.busy_since = time.monotonic()
        try:
            try:
                results = self._run_group(conn, live, isolate=False)  # the fast path: no SAVEPOINTs
            except _Retry:
                results = self._run_group(conn, live, isolate=True)
        except Exception as e:  # noqa: BLE001 - the commit itself failed: nobody is durable
            self.stats.failed_commits += 1
            self.stats.fault(f"commit failed: {e}", time.time())
            self.stats.busy_since = None
            log.error("journal commit failed: %s", e)
            self._abandon(conn)
            err = StoreError(f"journal commit failed: {e}")
            err.__cause__ = e
            for _, fut in live:
                if not fut.done():
                    fut.set_exception(err)
            return
        st = self.stats
        st.busy_since = None
        st.commits += 1
        st.writes += len(results)
        st.failed_writes += sum(1 for _, ok, _ in results if not ok)
        store_errors = [v for _, ok, v in results if not ok and isinstance(v, StoreError)]
        if store_errors:
            st.fault(str(store_errors[-1]), time.time())
        else:
            if st.failing:
                log.warning("journal commits again after a failure (%d so far)", st.faults)
            st.clean(time.time())
        st.observe(time.perf_counter() - t0)
        st.max_group = max(st.max_group, len(results))
        for fut, ok, value in results:
            if ok:
                fut.set_result(value)
            else:
                fut.set_exception(value)

"""Issue 13: hostile passengers and small faults never take the cabin server down.

Each test starts the real service (``appliance run`` as a subprocess, its own config, ports on
127.0.0.1, a fake ``$NOTIFY_SOCKET`` with ``WATCHDOG_USEC`` set as systemd would) and replays one
failure listed under "Why" in the issue. Every test prints the figures it measured (loop stall, peak
RSS, watchdog gap, status counts) before it asserts, so a failing run says by how much.

They fail on the code the issue was filed against, so each carries a strict ``xfail`` naming what
is missing: when a fix lands and the test passes, the strict mark turns that into a failure, and the
mark must be removed with the fix.

Named bounds the fixes must meet: ``MEMORY_MAX_MIB`` (300, the unit's ``MemoryMax=``),
``LIMIT_NOFILE`` (1024, the unit's ``LimitNOFILE=``), ``FLIGHT_ANSWER_BOUND_S`` (0.1),
``WATCHDOG_GAP_BOUND_S``, ``ERROR_BODY_MAX``, ``REFUSE_WITHIN_S``, ``HEADER_TIMEOUT_BOUND_S`` and
``INTAKE_STALL_BOUND_S``. Run them alone with ``pytest -m hostile -s`` to see the figures.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import os
import pty
import socket
import subprocess
import sys
import threading
import time
import tty
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from argon2 import PasswordHasher

from appliance.web.admin.auth import hash_password
from firmware_bridge.frame import DiscreteBits, encode_discretes

from .helpers import (
    FLIGHT_ANSWER_BOUND_S,
    LIMIT_NOFILE,
    MEMORY_MAX_MIB,
    TOKEN,
    WATCHDOG_USEC,
    Answer,
    FlightPoller,
    HostileService,
    SlowClients,
    free_ports,
    raw_request,
    repeated,
    source_address,
)

pytestmark = [pytest.mark.hostile, pytest.mark.e2e, pytest.mark.timeout(120)]

#: Pings come every half WatchdogSec (5 s), so a healthy service's gap is ~5.0 s already; the
#: issue's "gap under half WatchdogSec" is read as: no ping held back by more than 1 s (a gap under
#: 6 s, leaving 4 s before systemd's 10 s kill).
WATCHDOG_PERIOD_S = WATCHDOG_USEC / 2e6
WATCHDOG_GAP_BOUND_S = WATCHDOG_PERIOD_S + 1.0
#: An error body is at most this long (bytes) and never echoes the input.
ERROR_BODY_MAX = 4096
#: A refused body is refused this fast (s from the first byte sent).
REFUSE_WITHIN_S = 2.0
#: A connection that has not sent a whole request head within this is closed (s).
HEADER_TIMEOUT_BOUND_S = 20.0

MIB = 1 << 20
ADMIN_PASSWORD = "correct horse battery staple"


def report(name: str, **figures: Any) -> None:
    """Print the measured figures on one line (shown with ``-s`` or in the failure report)."""
    print(f"\n[issue 13] {name}: " + ", ".join(f"{k}={v}" for k, v in figures.items()), flush=True)


def check(failures: list[str]) -> None:
    assert not failures, "\n".join(failures)


def order(seat: str = "12C", sku: str = "COFFEE", qty: int = 1) -> dict[str, Any]:
    return {"idempotency_key": uuid.uuid4().hex, "seat": seat, "items": [{"sku": sku, "qty": qty}]}


def post_json(port: int, path: str, doc: Any, source: str = "127.0.0.1",
              headers: dict[str, str] | None = None) -> Answer:
    return raw_request(port, "POST", path, json.dumps(doc).encode(), source=source, timeout=30,
                       headers={"Content-Type": "application/json", **(headers or {})})


def admin_users_config(cheap: bool = False) -> str:
    """One crew user; ``cheap``: a 1 MiB, 1-pass argon2 hash, where hashing cost is not the point."""
    pw_hash = (PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1).hash(ADMIN_PASSWORD)
               if cheap else hash_password(ADMIN_PASSWORD))
    return f"""
[[admin_users]]
name = "crew1"
role = "crew"
password_hash = "{pw_hash}"
"""


# ---------------------------------------------------------------------------------------------
# a) big bodies: refused at the edge, the loop keeps answering, memory bounded, watchdog on time
# ---------------------------------------------------------------------------------------------

def _giant_string_doc(key: str, total: int) -> Iterator[bytes]:
    """A JSON object of ``total`` bytes, nearly all of it the string value of ``key``, in 1 MiB pieces."""
    prefix = f'{{"{key}": "'.encode()
    suffix = b'", "password": "x"}'
    body = repeated(total - len(prefix) - len(suffix), b"A" * 4096)

    yield prefix
    yield from body
    yield suffix


def _array_of_empty_objects(total: int) -> bytes:
    n = (total - 2) // 3
    return b"[" + b",".join([b"{}"] * n) + b"]"


BIG_BODIES = {
    # name: (port: passenger/admin, path, size, chunked, marker that must not be echoed)
    "orders_8MiB_array": ("passenger", "/api/v1/orders", 8 * MIB, False, b"{},{},{},{}"),
    "orders_100MiB_streamed": ("passenger", "/api/v1/orders", 100 * MIB, True, b"A" * 64),
    "login_100MiB_streamed": ("admin", "/admin/v1/login", 100 * MIB, True, b"A" * 64),
    "intake_100MiB_before_token": ("admin", "/admin/v1/intake/uploads", 100 * MIB, True, b"A" * 64),
}


@pytest.mark.parametrize("case", list(BIG_BODIES))
def test_big_body_refused_at_the_edge(make_service: Any, case: str) -> None:
    where, path, size, chunked, marker = BIG_BODIES[case]
    svc: HostileService = make_service()
    assert svc.notify is not None
    port = svc.passenger_port if where == "passenger" else svc.admin_port
    first = svc.notify.wait_for("WATCHDOG=1", 10)
    assert first is not None, "no WATCHDOG=1 after READY"
    rss_before = svc.rss_mib()
    # Built before the poller starts: making the 8 MiB array holds this process's GIL ~0.25 s,
    # which would show as a slow poll of the service.
    whole = None if chunked else _array_of_empty_objects(size)

    t_start = time.monotonic()
    with FlightPoller(svc.passenger_port) as poller:
        if whole is None:
            key = "user" if "login" in case else "idempotency_key"
            ans = raw_request(port, "POST", path, _giant_string_doc(key, size), chunked=True, timeout=45,
                              headers={"Content-Type": "application/json"})
        else:
            ans = raw_request(port, "POST", path, whole, timeout=45,
                              headers={"Content-Type": "application/json"})
        t_answer = time.monotonic()
        # Watch one watchdog period past the answer, so a ping held back by the request shows.
        while time.monotonic() < max(t_answer, t_start) + WATCHDOG_PERIOD_S + 1.2 \
                and svc.alive():
            time.sleep(0.1)
    t_end = time.monotonic()
    gap = svc.notify.max_watchdog_gap(t_start, t_end)
    peak = svc.peak_rss_mib()
    echoed = marker in ans.body
    report(case, status=ans.status, answer_s=f"{ans.seconds:.2f}", sent_MiB=f"{ans.sent / MIB:.1f}",
           error_body_bytes=ans.body_len, echoes_input=echoed, flight=poller.summary(),
           rss_before_MiB=f"{rss_before:.0f}", peak_rss_MiB=f"{peak:.0f}",
           max_watchdog_gap_s=f"{gap:.1f}", transport=ans.error or "ok", alive=svc.alive())

    failures = []
    if ans.status is None or not 400 <= ans.status < 500:
        failures.append(f"answer {ans.status} ({ans.error}), expected 413 or another 4xx")
    if ans.seconds > REFUSE_WITHIN_S:
        failures.append(f"answered after {ans.seconds:.1f} s (bound {REFUSE_WITHIN_S} s)")
    if chunked and ans.sent >= size:
        failures.append(f"the server took the whole {size / MIB:.0f} MiB body before refusing it")
    if ans.body_len > ERROR_BODY_MAX or echoed:
        failures.append(f"error body {ans.body_len} bytes, echoes the input: {echoed}")
    if poller.worst() >= FLIGHT_ANSWER_BOUND_S or poller.slow():
        failures.append(f"/api/v1/flight meanwhile: {poller.summary()}")
    if peak >= MEMORY_MAX_MIB:
        failures.append(f"peak RSS {peak:.0f} MiB >= MemoryMax {MEMORY_MAX_MIB} MiB")
    if gap >= WATCHDOG_GAP_BOUND_S:
        failures.append(f"watchdog gap {gap:.1f} s >= {WATCHDOG_GAP_BOUND_S:.1f} s")
    if not svc.alive():
        failures.append("the service died")
    check(failures)


# ---------------------------------------------------------------------------------------------
# b) bad JSON values: 4xx, never 500; a bad login input counts toward throttling
# ---------------------------------------------------------------------------------------------

def test_nan_in_an_order_is_a_4xx(make_service: Any) -> None:
    svc: HostileService = make_service()
    body = json.dumps(order()).replace('"qty": 1', '"qty": NaN').encode()
    ans = raw_request(svc.passenger_port, "POST", "/api/v1/orders", body,
                      headers={"Content-Type": "application/json"})
    body2 = json.dumps({**order(), "tip": 1}).replace('"tip": 1', '"tip": Infinity').encode()
    ans2 = raw_request(svc.passenger_port, "POST", "/api/v1/orders", body2,
                       headers={"Content-Type": "application/json"})
    report("nan_order", qty_NaN_status=ans.status, extra_Infinity_status=ans2.status,
           flight_ok=svc.passenger("/api/v1/flight") is not None)
    assert ans.status is not None and 400 <= ans.status < 500, (ans.status, ans.body[:300])
    assert ans2.status is not None and 400 <= ans2.status < 500, (ans2.status, ans2.body[:300])


def test_lone_surrogate_login_is_a_4xx_that_counts(make_service: Any) -> None:
    svc: HostileService = make_service(admin_users_config())
    src = "127.0.0.7"
    body = b'{"user": "\\ud800", "password": "guess"}'
    statuses = []
    for _ in range(5):  # max_failures (5) bad inputs...
        ans = raw_request(svc.admin_port, "POST", "/admin/v1/login", body, source=src,
                          headers={"Content-Type": "application/json"})
        statuses.append(ans.status)
    # ...then a well-formed wrong password from the same address must find it locked.
    after = post_json(svc.admin_port, "/admin/v1/login", {"user": "crew1", "password": "wrong"},
                      source=src)
    report("lone_surrogate_login", surrogate_statuses=statuses, next_attempt_status=after.status,
           service_alive=svc.alive())
    assert all(s is not None and 400 <= s < 500 for s in statuses), statuses
    assert after.status == 429, f"5 bad-input attempts then {after.status}: they were not counted"


# ---------------------------------------------------------------------------------------------
# c) login throttling: parallel guesses, many addresses against one account
# ---------------------------------------------------------------------------------------------

def test_parallel_wrong_logins_are_throttled(make_service: Any) -> None:
    svc: HostileService = make_service(admin_users_config())
    rss_before = svc.rss_mib()
    src = "127.0.0.9"
    barrier = threading.Barrier(40)

    def guess(i: int) -> int | None:
        barrier.wait(10)
        return post_json(svc.admin_port, "/admin/v1/login",
                         {"user": "crew1", "password": f"wrong-{i}"}, source=src).status

    t0 = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(40) as ex:
        statuses = list(ex.map(guess, range(40)))
    took = time.monotonic() - t0
    counts = {s: statuses.count(s) for s in sorted(set(statuses), key=str)}
    peak = svc.peak_rss_mib()
    report("parallel_logins", statuses=counts, seconds=f"{took:.1f}",
           rss_before_MiB=f"{rss_before:.0f}", peak_rss_MiB=f"{peak:.0f}")
    failures = []
    if counts.get(429, 0) == 0:
        failures.append(f"40 parallel wrong passwords from one address: {counts}, no 429")
    if counts.get(401, 0) > 5:  # max_failures: attempts count as they start
        failures.append(f"{counts.get(401, 0)} passwords were checked (max_failures is 5)")
    if peak >= MEMORY_MAX_MIB:
        failures.append(f"peak RSS {peak:.0f} MiB >= {MEMORY_MAX_MIB} MiB (unbounded argon2)")
    check(failures)


def test_many_addresses_cannot_guess_one_account(make_service: Any) -> None:
    svc: HostileService = make_service(admin_users_config(cheap=True), watchdog_usec=None)
    statuses: list[int | None] = []
    first_lock = None
    for a in range(20):
        for i in range(5):
            st = post_json(svc.admin_port, "/admin/v1/login",
                           {"user": "crew1", "password": f"wrong-{a}-{i}"},
                           source=source_address(a)).status
            statuses.append(st)
            if st in (423, 429) and first_lock is None:
                first_lock = len(statuses)
    checked = statuses.count(401)
    report("per_account_lockout", guesses=len(statuses), checked_401=checked,
           locked=statuses.count(429) + statuses.count(423), first_lock_at=first_lock)
    assert first_lock is not None and checked < 100, \
        f"{checked} of 100 guesses at one account from 20 addresses were checked, never locked"


# ---------------------------------------------------------------------------------------------
# d) orders: rate limit per client, checked against the menu
# ---------------------------------------------------------------------------------------------

def test_order_flood_from_one_address_is_rate_limited(make_service: Any) -> None:
    svc: HostileService = make_service()
    budget_s, n = 25.0, 1000
    t0 = time.monotonic()
    results: list[tuple[int | None, str | None]] = []
    stop = threading.Event()

    def one(i: int) -> tuple[int | None, str | None]:
        if stop.is_set() or time.monotonic() - t0 > budget_s:
            return (None, None)
        row = 1 + i % 40
        ans = post_json(svc.passenger_port, "/api/v1/orders",
                        order(seat=f"{row}{'ABCDEFGHJK'[i % 10]}"), source="127.0.0.11")
        if ans.status == 429:
            stop.set()
        return (ans.status, ans.headers.get("retry-after"))

    with concurrent.futures.ThreadPoolExecutor(8) as ex:
        results = [r for r in ex.map(one, range(n)) if r[0] is not None]
    took = time.monotonic() - t0
    counts: dict[Any, int] = {}
    for st, _ in results:
        counts[st] = counts.get(st, 0) + 1
    limited = [ra for st, ra in results if st == 429]
    report("order_flood", sent=len(results), seconds=f"{took:.1f}", statuses=counts,
           rate=f"{len(results) / took:.0f}/s", retry_after=limited[:1])
    assert limited, f"{len(results)} orders from one address in {took:.0f} s, statuses {counts}"
    assert all(ra and ra.isdigit() for ra in limited), limited


def test_order_for_a_sku_not_on_the_menu_is_refused(make_service: Any) -> None:
    svc: HostileService = make_service()
    ans = post_json(svc.passenger_port, "/api/v1/orders", order(sku="CAVIAR"))
    ok = post_json(svc.passenger_port, "/api/v1/orders", order(sku="COFFEE"))
    report("unknown_sku", unknown_status=ans.status, unknown_body=ans.body[:160],
           known_status=ok.status)
    assert ok.status == 201, ok
    assert ans.status == 422, f"unknown SKU accepted: {ans.status} {ans.body[:200]!r}"
    assert b"CAVIAR" in ans.body and b"menu" in ans.body.lower(), ans.body[:300]


def test_order_quantity_out_of_bounds_is_a_422(make_service: Any) -> None:
    """Holds today (pydantic bounds 1..10); kept as the guard the menu check must not loosen."""
    svc: HostileService = make_service(watchdog_usec=None)
    statuses = {qty: post_json(svc.passenger_port, "/api/v1/orders", order(qty=qty)).status
                for qty in (0, -1, 11, 10**6, 2**70)}
    report("quantity_bounds", statuses=statuses)
    assert set(statuses.values()) == {422}, statuses


# ---------------------------------------------------------------------------------------------
# e) a transient commit failure: orders recover, and so must the watchdog
# ---------------------------------------------------------------------------------------------

def fill(path: Path, leave: int = 0) -> None:
    """Write ``path`` until the filesystem has at most ``leave`` bytes free (or is full)."""
    with open(path, "wb") as f:
        try:
            while True:
                st = os.statvfs(path)
                free = st.f_bavail * st.f_frsize
                if free <= leave:
                    break
                f.write(b"\0" * min(MIB, max(4096, free - leave)))
                f.flush()
        except OSError:
            pass


@pytest.fixture
def small_tmpfs(tmp_path: Path, request: pytest.FixtureRequest) -> Any:
    size = getattr(request, "param", "24m")
    mnt = tmp_path / "tmpfs"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(mnt)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def test_watchdog_resumes_after_a_transient_disk_full(make_service: Any, small_tmpfs: Path) -> None:
    data = small_tmpfs / "data"
    svc: HostileService = make_service(watchdog_usec=2_000_000,
                                       env={"APPLIANCE_DATA_DIR": str(data)})
    assert svc.notify is not None
    assert post_json(svc.passenger_port, "/api/v1/orders", order()).status == 201
    # Fill the disk, then place orders until one fails to commit.
    filler = small_tmpfs / "filler"
    fill(filler)
    failed = []
    for _ in range(20):
        st = post_json(svc.passenger_port, "/api/v1/orders", order()).status
        if st != 201:
            failed.append(st)
            break
    free_at = time.monotonic()
    filler.unlink()
    after = [post_json(svc.passenger_port, "/api/v1/orders", order()).status for _ in range(3)]
    ok_at = time.monotonic()
    # Wait up to three ping periods (1 s each) for the watchdog to come back.
    resumed = svc.notify.wait_for("WATCHDOG=1", 3.5, after=ok_at)
    pings_after = [t for t in svc.notify.times("WATCHDOG=1") if t > ok_at]
    last = max(svc.notify.times("WATCHDOG=1"), default=0.0)
    report("watchdog_after_disk_full", failed_order_status=failed, orders_after_freeing=after,
           pings_since_orders_ok=len(pings_after),
           seconds_without_ping=f"{time.monotonic() - last:.1f}",
           freed_to_ok_s=f"{ok_at - free_at:.2f}")
    assert failed, "the disk never filled: no commit failed"
    assert after == [201, 201, 201], after
    assert resumed is not None, (f"no WATCHDOG=1 in 3.5 s after orders succeed again "
                                 f"({time.monotonic() - last:.1f} s since the last one)")


# ---------------------------------------------------------------------------------------------
# f) slow headers: a trickle of one byte a second must not hold a connection open
# ---------------------------------------------------------------------------------------------

def test_slow_header_connections_are_closed(make_service: Any) -> None:
    (media_port,) = free_ports(1)
    svc: HostileService = make_service(f"[content]\nmedia_port = {media_port}\n")
    ports = {"passenger": svc.passenger_port, "admin": svc.admin_port, "media": media_port}
    clients = {name: SlowClients(port, 500) for name, port in ports.items()}
    try:
        t0 = time.monotonic()
        open_at: dict[str, list[tuple[int, int]]] = {n: [] for n in ports}
        flight_worst = 0.0
        while (el := time.monotonic() - t0) < HEADER_TIMEOUT_BOUND_S + 3:
            for name, c in clients.items():
                c.step()
                open_at[name].append((round(el), c.still_open()))
            t = time.monotonic()
            try:
                svc.passenger("/api/v1/flight")
            except OSError:
                flight_worst = max(flight_worst, 99.0)
            flight_worst = max(flight_worst, time.monotonic() - t)
            time.sleep(max(0.0, 1.0 - (time.monotonic() - t0) % 1.0))
        still = {n: c.still_open() for n, c in clients.items()}
        refused = {n: sum(1 for x in c.conns if x.refused) for n, c in clients.items()}
        answered = {n: sum(1 for x in c.conns if x.answered) for n, c in clients.items()}
        report("slow_headers", still_open_after_s=f"{HEADER_TIMEOUT_BOUND_S + 3:.0f}",
               still_open=still, refused_at_connect=refused, got_an_answer=answered,
               open_at_5s={n: v[min(5, len(v) - 1)][1] for n, v in open_at.items()},
               flight_worst_ms=f"{flight_worst * 1000:.0f}", service_alive=svc.alive())
    finally:
        for c in clients.values():
            c.close()
    assert svc.alive()
    assert not any(still.values()), \
        f"connections still open {HEADER_TIMEOUT_BOUND_S + 3:.0f} s into a 1 byte/s head: {still}"


def test_slow_connections_at_limit_nofile_leave_the_service_working(make_service: Any) -> None:
    (media_port,) = free_ports(1)
    svc: HostileService = make_service(f"[content]\nmedia_port = {media_port}\n", nofile=LIMIT_NOFILE)
    assert svc.notify is not None
    log_before = svc.log_path.stat().st_size
    t0 = time.monotonic()
    clients = [SlowClients(media_port, 500), SlowClients(svc.passenger_port, 500)]
    outcomes: dict[str, list[Any]] = {"order": [], "flight": [], "journal": []}
    try:
        for _ in range(6):
            for c in clients:
                c.step()
            outcomes["order"].append(post_json(svc.passenger_port, "/api/v1/orders", order()).status)
            for key, call in (("flight", lambda: svc.passenger("/api/v1/flight")),
                              ("journal", lambda: svc.admin("/admin/v1/journal?limit=5"))):
                try:
                    call()
                    outcomes[key].append(200)
                except Exception as e:  # noqa: BLE001 - the figure is what went wrong
                    outcomes[key].append(type(e).__name__ + ":" + str(getattr(e, "code", e))[:40])
            time.sleep(max(0.0, 1.0 - (time.monotonic() - t0) % 1.0))
        held = [c.still_open() for c in clients]
    finally:
        for c in clients:
            c.close()
    t_end = time.monotonic()
    gap = svc.notify.max_watchdog_gap(t0, t_end)
    log = svc.log()
    emfile = log.count("Too many open files")
    log_growth = svc.log_path.stat().st_size - log_before
    report("slow_connections_at_nofile", nofile=LIMIT_NOFILE, held_media_passenger=held,
           orders=outcomes["order"], flight=outcomes["flight"], journal=outcomes["journal"],
           emfile_log_lines=emfile, log_growth_bytes=log_growth, max_watchdog_gap_s=f"{gap:.1f}")
    failures = []
    for key, got in outcomes.items():
        want = 201 if key == "order" else 200
        if any(x != want for x in got):
            failures.append(f"{key}: {got}")
    if emfile:
        failures.append(f"{emfile} 'Too many open files' in the log")
    if gap >= WATCHDOG_GAP_BOUND_S:
        failures.append(f"watchdog gap {gap:.1f} s")
    check(failures)


# ---------------------------------------------------------------------------------------------
# g) bus time: a burst whose card time jumps cannot satisfy persistence
# ---------------------------------------------------------------------------------------------

@pytest.fixture
def card_pty(tmp_path: Path) -> Any:
    master, slave = pty.openpty()
    tty.setraw(master)
    tty.setraw(slave)
    link = tmp_path / "card"
    link.symlink_to(os.ttyname(slave))
    os.set_blocking(master, False)
    try:
        yield master
    finally:
        os.close(master)
        os.close(slave)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view):]
        except BlockingIOError:
            time.sleep(0.005)


def _drain(fd: int) -> None:
    try:
        while os.read(fd, 65536):
            pass
    except (BlockingIOError, OSError):
        pass


ON_GROUND = DiscreteBits.WOW_LEFT | DiscreteBits.WOW_RIGHT | DiscreteBits.DOOR_FWD_CLOSED \
    | DiscreteBits.DOOR_AFT_CLOSED
IN_AIR = DiscreteBits.DOOR_FWD_CLOSED | DiscreteBits.DOOR_AFT_CLOSED


def test_card_time_jump_burst_does_not_flip_to_flight(make_service: Any, card_pty: int) -> None:
    svc: HostileService = make_service(serial=True)
    # A plausible card on the ground: discretes every 50 ms, card time following host time.
    t_card0 = 5_000_000
    host0 = time.monotonic()
    on_ground_seen = None
    while time.monotonic() - host0 < 8.0:
        t_us = t_card0 + int((time.monotonic() - host0) * 1e6)
        _write_all(card_pty, encode_discretes(t_us, ON_GROUND))
        _drain(card_pty)
        time.sleep(0.05)
        if on_ground_seen is None and svc.passenger("/api/v1/flight")["air_ground"] == "ground":
            on_ground_seen = time.monotonic() - host0
        if on_ground_seen is not None and time.monotonic() - host0 > on_ground_seen + 1.0:
            break
    before = svc.passenger("/api/v1/flight")
    last_us = t_card0 + int((time.monotonic() - host0) * 1e6)
    # The burst: 13 CRC-valid discrete frames, WOW released, card time +1,000 s, 0.25 s apart.
    burst = b"".join(encode_discretes(last_us + 1_000_000_000 + k * 250_000, IN_AIR)
                     for k in range(13))
    _write_all(card_pty, burst)
    time.sleep(2.0)
    after = svc.passenger("/api/v1/flight")
    rows = svc.admin("/admin/v1/journal?kind=mode&limit=50")["rows"]
    card = svc.admin("/admin/v1/signals")["sources"].get("card", {})
    bite = svc.admin("/admin/v1/status")["bite"].get("bus:card", {})
    report("card_time_jump", burst_bytes=len(burst), ground_after_s=on_ground_seen,
           before=(before["mode"], before["air_ground"]), after=(after["mode"], after["air_ground"]),
           mode_rows=len(rows), last_mode_row=rows[-1] if rows else None,
           card_time_jumps=card.get("card_time_jumps"), bite=(bite.get("state"), bite.get("reason")))
    assert before.get("mode") == "GROUND", before
    assert after.get("mode") == "GROUND", f"a {len(burst)}-byte burst flipped the mode: {after}"
    assert card.get("card_time_jumps") == 13, card
    assert bite.get("state") == "amber", bite


class CardFeeder:
    """A plausible card on the pty, on its own thread: on-ground discretes and UTC words every 0.1 s.

    Card time follows the host's monotonic clock; the UTC it sends is the host's UTC plus
    ``utc_offset_s`` (a misset avionics clock).
    """

    def __init__(self, fd: int, utc_offset_s: float = 0.0) -> None:
        from firmware_bridge.labels import LabelTable, Status

        self.fd, self.utc_offset_s = fd, utc_offset_s
        self.table = LabelTable.default()
        self.spec = {s.name: s for s in self.table}
        self.status = Status.NORMAL
        self.t0 = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="card")
        self._thread.start()

    def _word(self, name: str, value: Any, t_us: int) -> bytes:
        from firmware_bridge.frame import encode_word

        w = self.spec[name].encode(value, self.status, sdi=0, label_reversed=self.table.label_reversed)
        return encode_word(1, t_us, w)

    def _run(self) -> None:
        import datetime as dt

        while not self._stop.is_set():
            t_us = 5_000_000 + int((time.monotonic() - self.t0) * 1e6)
            utc = time.time() + self.utc_offset_s
            frames = (encode_discretes(t_us, ON_GROUND)
                      + self._word("utc_time", int(utc % 86400), t_us + 400)
                      + self._word("utc_date", dt.datetime.fromtimestamp(utc, dt.UTC).date().isoformat(),
                                   t_us + 800))
            _write_all(self.fd, frames)
            _drain(self.fd)
            self._stop.wait(0.1)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(2)


def test_bus_time_rollback_does_not_admit_an_expired_bundle(make_service: Any, card_pty: int,
                                                            tmp_path: Path) -> None:
    from appliance.intake.hangar import PushError, push
    from tests.intake.helpers import KEYS, make_bundle, pub_hex

    day = 86400.0
    keys = ", ".join(f'"{pub_hex(k)}"' for k in KEYS[:3])
    svc: HostileService = make_service(f"[intake.roles.content]\nkeys = [{keys}]\nthreshold = 2\n",
                                       serial=True, watchdog_usec=None)
    feeder = CardFeeder(card_pty, utc_offset_s=-20 * day)
    try:
        deadline = time.monotonic() + 15
        view = svc.passenger("/api/v1/flight")
        while view["utc"]["source"] != "avionics" and time.monotonic() < deadline:
            time.sleep(0.2)
            view = svc.passenger("/api/v1/flight")
        assert view["utc"]["source"] == "avionics", view["utc"]
        # Signed 40 days ago, valid for 30: expired 10 days ago by every clock but the bus's.
        bundle = make_bundle(tmp_path / "hangar", 1, {"old-book": "expired"}, KEYS[:2],
                             issued=time.time() - 40 * day, expires_days=30)
        try:
            res = push(bundle, f"http://127.0.0.1:{svc.admin_port}", TOKEN, activate=False,
                       timeout_s=10, give_up_s=20)
            outcome = f"staged: {res}"[:160]
        except PushError as e:
            outcome = f"refused={e.refused}: {e}"[:160]
    finally:
        feeder.stop()
    report("bus_time_rollback", avionics_utc=view["utc"]["value"], expired_bundle=outcome)
    assert outcome.startswith("refused=True"), outcome
    assert "expire" in outcome.lower(), outcome


# ---------------------------------------------------------------------------------------------
# h) hangar intake: a PUT that stalls with its socket open must not hold the upload
# ---------------------------------------------------------------------------------------------

#: A stalled upload must be dropped (and a resuming push take over) within this (s). The hangar's
#: push gives up after 90 s; a body idle timeout must be well below that.
INTAKE_STALL_BOUND_S = 20.0


def test_stalled_intake_put_is_dropped_and_a_push_resumes(make_service: Any, tmp_path: Path) -> None:
    from appliance.intake.bundle import METADATA, PAYLOAD
    from appliance.intake.hangar import PushError, push
    from tests.intake.helpers import KEYS, make_bundle, pub_hex

    bundle = make_bundle(tmp_path / "hangar", 1, {"stall-book": os.urandom(60_000).hex()}, KEYS[:2])
    payload = (bundle / PAYLOAD).read_bytes()
    keys = ", ".join(f'"{pub_hex(k)}"' for k in KEYS[:3])
    svc: HostileService = make_service(f"[intake.roles.content]\nkeys = [{keys}]\nthreshold = 2\n",
                                       watchdog_usec=None)
    auth = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    begin = raw_request(svc.admin_port, "POST", "/admin/v1/intake/uploads",
                        (bundle / METADATA).read_bytes(), headers=auth)
    assert begin.status == 201, begin
    bid = json.loads(begin.body)["id"]
    # The stalled PUT: the whole length announced, half of it sent, then silence (socket open).
    half = len(payload) // 2
    stalled = socket.create_connection(("127.0.0.1", svc.admin_port))
    stalled.sendall((f"PUT /admin/v1/intake/uploads/{bid}?offset=0 HTTP/1.1\r\nHost: a\r\n"
                     f"Authorization: Bearer {TOKEN}\r\nContent-Length: {len(payload)}\r\n\r\n"
                     ).encode() + payload[:half])
    t0 = time.monotonic()
    outcome = "staged"
    try:
        try:
            res = push(bundle, f"http://127.0.0.1:{svc.admin_port}", TOKEN, activate=False,
                       timeout_s=5, give_up_s=INTAKE_STALL_BOUND_S, retry_s=0.5)
            outcome = f"staged ({res})"[:120]
        except PushError as e:
            outcome = f"PushError: {e}"[:160]
        took = time.monotonic() - t0
        stalled.setblocking(False)
        answered = b""  # what the server said on the stalled connection before closing it
        try:
            while chunk := stalled.recv(65536):
                answered += chunk
            still_open = False
        except BlockingIOError:
            still_open = True
        except OSError:
            still_open = False
    finally:
        stalled.close()
    report("stalled_intake_put", payload_bytes=len(payload), stalled_after=half,
           resuming_push=outcome, push_s=f"{took:.1f}", stalled_socket_still_open=still_open,
           stalled_answer=answered[:32])
    assert outcome.startswith("staged"), outcome
    assert took < INTAKE_STALL_BOUND_S, took


def _colliding_bundle(tmp: Path) -> Path:
    """A validly signed software bundle whose manifest has ``x`` both as a file and as a directory."""
    import hashlib
    import io
    import tarfile

    import zstandard

    from appliance.intake.bundle import METADATA, PAYLOAD, load_envelope
    from appliance.intake.hangar import build_bundle
    from tests.intake.helpers import KEYS, resign

    src = tmp / "src-collide"
    src.mkdir(parents=True)
    (src / "a").write_text("placeholder")
    out = tmp / "collide.bundle"
    build_bundle("software", "software-collide", 1, [src], out)
    files = {"x": b"a file called x\n", "x/y": b"and a file inside x\n"}
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for rel, data in sorted(files.items()):
            info = tarfile.TarInfo(rel)
            info.size, info.mode = len(data), 0o644
            tf.addfile(info, io.BytesIO(data))
    payload = zstandard.ZstdCompressor().compress(raw.getvalue())
    (out / PAYLOAD).write_bytes(payload)
    signed = dict(load_envelope(out / METADATA).signed)
    signed["payload"] = {"length": len(payload), "sha256": hashlib.sha256(payload).hexdigest(),
                         "compression": "zstd"}
    signed["files"] = {rel: {"length": len(d), "hashes": {"sha256": hashlib.sha256(d).hexdigest()}}
                       for rel, d in sorted(files.items())}
    resign(out, signed, [KEYS[0]])
    return out


def test_colliding_manifest_is_refused_at_verification(make_service: Any, tmp_path: Path) -> None:
    from appliance.intake.hangar import PushError, push
    from tests.intake.helpers import KEYS, pub_hex

    bundle = _colliding_bundle(tmp_path / "hangar")
    svc: HostileService = make_service(
        f'[intake.roles.software]\nkeys = ["{pub_hex(KEYS[0])}"]\nthreshold = 1\n', watchdog_usec=None)
    try:
        res = push(bundle, f"http://127.0.0.1:{svc.admin_port}", TOKEN, activate=False,
                   timeout_s=10, give_up_s=20)
        outcome = f"staged: {res}"[:200]
    except PushError as e:
        outcome = f"refused={e.refused}: {e}"[:200]
    uploads = svc.admin("/admin/v1/intake/uploads")
    states = [u.get("state") for u in uploads]
    report("colliding_manifest", push=outcome, upload_states=states,
           service_500s=svc.log().count("500 Internal") + svc.log().count("Exception in ASGI"))
    assert outcome.startswith("refused=True"), outcome
    assert "complete" not in states, states


def _dir_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file()) if root.exists() else 0


def begin_big_upload(make_service: Any, small_tmpfs: Path, tmp_path: Path,
                     ) -> tuple[HostileService, Path, bytes, str, int]:
    """The service with its data on ``small_tmpfs`` and an admitted 5 MiB content upload.

    A 10 MiB book that compresses about 2:1 (not a decompression bomb). Returns the service, the
    bundle folder, its payload, the upload id and the service's chunk size.
    """
    from appliance.intake.bundle import METADATA, PAYLOAD
    from tests.intake.helpers import KEYS, make_bundle, pub_hex

    bundle = make_bundle(tmp_path / "hangar", 1, {"big-book": os.urandom(5 * MIB).hex()}, KEYS[:2])
    keys = ", ".join(f'"{pub_hex(k)}"' for k in KEYS[:3])
    svc: HostileService = make_service(
        f"[intake]\nfree_margin_bytes = 0\n[intake.roles.content]\nkeys = [{keys}]\nthreshold = 2\n",
        watchdog_usec=None, env={"APPLIANCE_DATA_DIR": str(small_tmpfs / "data")})
    auth = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    begin = raw_request(svc.admin_port, "POST", "/admin/v1/intake/uploads",
                        (bundle / METADATA).read_bytes(), headers=auth)
    assert begin.status == 201, begin
    answer = json.loads(begin.body)
    return svc, bundle, (bundle / PAYLOAD).read_bytes(), answer["id"], answer["chunk_bytes"]


def put_chunks(port: int, bid: str, payload: bytes, chunk: int) -> Answer:
    """PUT ``payload`` in pieces of the intake's ``chunk`` size, as the hangar push does.

    Returns the last answer: the first that is not 200, or the last chunk's.
    """
    answer: Answer | None = None
    for offset in range(0, len(payload), chunk):
        answer = raw_request(port, "PUT", f"/admin/v1/intake/uploads/{bid}?offset={offset}",
                             payload[offset:offset + chunk],
                             headers={"Authorization": f"Bearer {TOKEN}"})
        if answer.status != 200:
            break
    assert answer is not None
    return answer


@pytest.mark.parametrize("small_tmpfs", ["48m"], indirect=True)
def test_disk_full_at_finalize_is_a_507_leaving_nothing(make_service: Any, small_tmpfs: Path,
                                                        tmp_path: Path) -> None:
    svc, _bundle, payload, bid, chunk = begin_big_upload(make_service, small_tmpfs, tmp_path)
    data = small_tmpfs / "data"
    put = put_chunks(svc.admin_port, bid, payload, chunk)
    assert put.status == 200, put
    assert post_json(svc.passenger_port, "/api/v1/orders", order()).status == 201
    # The hangar's disk fills up (something else wrote), leaving 3 MiB: the journal's share.
    filler = small_tmpfs / "filler"
    fill(filler, leave=3 * MIB)
    fin = raw_request(svc.admin_port, "POST", f"/admin/v1/intake/uploads/{bid}/finalize", b"",
                      headers={"Authorization": f"Bearer {TOKEN}"})
    intake_dir = data / "intake"
    leftover = _dir_bytes(intake_dir / "unpack") + _dir_bytes(intake_dir / "staged")
    orders_after = [post_json(svc.passenger_port, "/api/v1/orders", order()).status for _ in range(3)]
    st = os.statvfs(small_tmpfs)
    report("disk_full_at_finalize", payload_MiB=f"{len(payload) / MIB:.1f}", finalize=fin.status,
           finalize_body=fin.body[:120], unpacked_leftover_MiB=f"{leftover / MIB:.1f}",
           free_after_MiB=f"{st.f_bavail * st.f_frsize / MIB:.1f}", orders_after=orders_after)
    failures = []
    if fin.status != 507:
        failures.append(f"finalize answered {fin.status}, expected 507 with the reason")
    if leftover:
        failures.append(f"{leftover / MIB:.1f} MiB of half-unpacked files left behind")
    if orders_after != [201, 201, 201]:
        failures.append(f"orders after the failed finalize: {orders_after}")
    check(failures)


@pytest.mark.parametrize("small_tmpfs", ["48m"], indirect=True)
def test_disk_full_during_upload_is_a_507_and_a_push_resumes(make_service: Any, small_tmpfs: Path,
                                                             tmp_path: Path) -> None:
    from appliance.intake.hangar import push

    svc, bundle, payload, bid, chunk = begin_big_upload(make_service, small_tmpfs, tmp_path)
    # Something else fills the hangar's disk after the upload was admitted, leaving 3 MiB.
    filler = small_tmpfs / "filler"
    fill(filler, leave=3 * MIB)
    put = put_chunks(svc.admin_port, bid, payload, chunk)
    orders_after = [post_json(svc.passenger_port, "/api/v1/orders", order()).status for _ in range(3)]
    filler.unlink()  # space freed: the push resumes from the durable offset
    try:
        res = push(bundle, f"http://127.0.0.1:{svc.admin_port}", TOKEN, activate=False,
                   timeout_s=30, give_up_s=60)
        outcome = f"staged: sent {res.bytes_sent} bytes, {res.resumes} resume(s)"
    except Exception as e:  # noqa: BLE001 - reported, then asserted
        outcome = f"{type(e).__name__}: {e}"[:160]
    report("disk_full_during_upload", payload_MiB=f"{len(payload) / MIB:.1f}", put=put.status,
           put_error=put.error, put_body=put.body[:120], orders_after=orders_after, push=outcome)
    failures = []
    if put.status != 507 or b"journal" not in put.body:
        failures.append(f"the PUT answered {put.status} ({put.error or put.body[:80]!r}), "
                        "expected 507 with the reason")
    if orders_after != [201, 201, 201]:
        failures.append(f"orders after the refused chunk: {orders_after}")
    if not outcome.startswith("staged"):
        failures.append(f"the push after freeing space: {outcome}")
    check(failures)


# ---------------------------------------------------------------------------------------------
# i) the demo's secrets
# ---------------------------------------------------------------------------------------------

def test_demo_keeps_its_secrets(tmp_path: Path) -> None:
    passenger, admin = free_ports(2)
    rec = tmp_path / "none.jsonl"
    rec.write_text("")
    env = {**os.environ, "APPLIANCE_PASSENGER__PORT": str(passenger),
           "APPLIANCE_ADMIN__PORT": str(admin), "PYTHONUNBUFFERED": "1"}
    for k in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"):
        env.pop(k, None)
    out = tmp_path / "demo.out"
    with open(out, "wb") as f:
        proc = subprocess.Popen([sys.executable, "-m", "appliance.cli", "demo", "--recording", str(rec)],
                                stdout=f, stderr=subprocess.STDOUT, cwd=tmp_path, env=env,
                                preexec_fn=lambda: os.umask(0o022))
    cfg, login = tmp_path / "var" / "appliance.toml", tmp_path / "var" / "demo-login"
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and "Ctrl-C" not in out.read_text(errors="replace"):
            assert proc.poll() is None, out.read_text()
            time.sleep(0.1)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    printed = out.read_text(errors="replace")
    token = next(line.split('"')[1] for line in cfg.read_text().splitlines()
                 if line.startswith("admin_token"))
    password = login.read_text().split()[1]
    modes = {p.name: oct(p.stat().st_mode & 0o777) for p in (cfg, login)}
    report("demo_secrets", modes=modes, token_printed=token in printed,
           password_printed=password in printed)
    failures = []
    for p in (cfg, login):
        if p.stat().st_mode & 0o077:
            failures.append(f"{p.name} is {oct(p.stat().st_mode & 0o777)}, readable by others")
    if token in printed or password in printed:
        failures.append(f"printed: token {token in printed}, password {password in printed}")
    check(failures)


@pytest.mark.parametrize("parser", ["httptools", "h11"])
def test_oversized_head_is_refused_on_either_parser(make_service: Any, parser: str) -> None:
    """A head over ``header_bytes`` (16 KiB) is refused on both parsers ([edge] http).

    The answer is 431 or 400 and the connection closes; a keep-alive client with two pipelined
    requests is then answered twice on one connection.
    """
    svc: HostileService = make_service(f'[edge]\nhttp = "{parser}"\n')
    big = b"GET /api/v1/flight HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * (64 << 10)
    with socket.create_connection(("127.0.0.1", svc.passenger_port), timeout=10) as s:
        try:
            s.sendall(big)
        except OSError:
            pass  # closed while sending: also a refusal
        answer = b""
        with contextlib.suppress(OSError):
            while chunk := s.recv(4096):
                answer += chunk
    assert answer.startswith((b"HTTP/1.1 431 ", b"HTTP/1.1 400 ")), answer[:80]
    req = b"GET /api/v1/flight HTTP/1.1\r\nHost: x\r\n\r\n"
    with socket.create_connection(("127.0.0.1", svc.passenger_port), timeout=10) as s:
        s.sendall(req + req)
        got = b""
        while got.count(b"HTTP/1.1 200 ") < 2:
            chunk = s.recv(65536)
            assert chunk, f"closed after {got.count(b'HTTP/1.1 200 ')} answers"
            got += chunk
    assert svc.alive()

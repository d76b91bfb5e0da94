"""The CAN input (``appliance.avionics.can_source``) and its simulated twin (``firmware_bridge.can_sim``).

In process: python-can's ``virtual`` bus (two Bus objects on one channel; the sender keeps the
timestamps built here), a real asyncio loop and the real ``can.Notifier``. Across processes:
``udp_multicast`` inside a private network namespace whose only route for 224.0.0.0/4 is its own
``lo``, the simulator and a receiver each run with ``ip netns exec`` and check where they are first.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import socket
import struct
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import can
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.avionics import can_source
from appliance.avionics.can_source import CanReader, open_bus
from appliance.avionics.chain import AvionicsChain
from appliance.avionics.params import Parameter, SourceStats, Validity
from appliance.errors import SourceError
from appliance.modes.airground import AirGround
from appliance.modes.events import AirGroundChanged, Event
from appliance.modes.policy import Mode
from appliance.settings import CanSettings
from firmware_bridge.can_sim import (
    ADC_ID,
    LGCIU_ID,
    UNKNOWN_IDS,
    CanFaults,
    can_messages,
    load_dbc,
    play_can,
)
from firmware_bridge.labels import LabelTable
from firmware_bridge.recording import Series, Trajectory

REPO = Path(__file__).resolve().parents[2]
DB = load_dbc()
LGCIU = DB.get_message_by_frame_id(LGCIU_ID)
ADC = DB.get_message_by_frame_id(ADC_ID)
T0 = 1_720_248_000.0  # flight time, epoch s
GROUP = "239.74.163.2"  # python-can's default IPv4 group; only ever used inside the namespace


# --- builders --------------------------------------------------------------------------------


def lgciu(t: float, on_ground: bool, *, fault: bool = False, counter: int = 0) -> can.Message:
    g = int(on_ground)
    data = LGCIU.encode({"AIR_GROUND": g, "WOW_LEFT": g, "WOW_RIGHT": g,
                         "LGCIU_FAULT": int(fault), "COUNTER": counter % 16})
    return can.Message(timestamp=t, arbitration_id=LGCIU_ID, is_extended_id=False, data=data)


def adc(t: float, cas: float, alt: float, gs: float, valid: tuple[int, int, int] = (1, 1, 1),
        counter: int = 0) -> can.Message:
    data = ADC.encode({"CAS_KT": cas, "CAS_VALID": valid[0], "ALTITUDE_FT": alt,
                       "ALTITUDE_VALID": valid[1], "GROUND_SPEED_KT": gs,
                       "GROUND_SPEED_VALID": valid[2], "COUNTER": counter % 16})
    return can.Message(timestamp=t, arbitration_id=ADC_ID, is_extended_id=False, data=data)


def raw(arb_id: int, data: bytes, *, extended: bool = False, t: float = T0) -> can.Message:
    return can.Message(timestamp=t, arbitration_id=arb_id, is_extended_id=extended, data=data,
                       dlc=len(data))


def virtual_pair() -> tuple[can.BusABC, can.BusABC]:
    """(receiver, sender) on a fresh virtual channel; the sender keeps message timestamps."""
    channel = f"test-{uuid.uuid4().hex}"
    rx = can.Bus(interface="virtual", channel=channel)
    tx = can.Bus(interface="virtual", channel=channel, preserve_timestamps=True)
    return rx, tx


async def wait_for(cond: Callable[[], bool], timeout: float = 3.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)


class Collector:
    """on_params that records the parameters and the thread each call ran on."""

    def __init__(self) -> None:
        self.params: list[Parameter] = []
        self.threads: set[int] = set()

    def __call__(self, params: list[Parameter]) -> None:
        self.threads.add(threading.get_ident())
        self.params.extend(params)

    def last(self, name: str) -> Parameter:
        return next(p for p in reversed(self.params) if p.name == name)


def trajectory(takeoff_s: float = 20.0, length_s: float = 40.0) -> Trajectory:
    """On ground until T0 + takeoff_s, then climbing; speeds ramp up from the start."""
    end = T0 + length_s
    return Trajectory({
        "onground": Series([T0, T0 + takeoff_s], [True, False], "hold", math.inf),
        "IAS": Series([T0, end], [0.0, 200.0], "linear", math.inf),
        "groundspeed": Series([T0, end], [0.0, 210.0], "linear", math.inf),
        "altitude": Series([T0, T0 + takeoff_s, end], [500.0, 500.0, 3000.0], "linear", math.inf),
    }, T0, end, "synthetic")


# --- in process: virtual bus, real loop, real Notifier ----------------------------------------


def test_parameters_arrive_on_the_loop_thread_with_values_and_validity() -> None:
    async def main() -> tuple[Collector, SourceStats, int]:
        rx, tx = virtual_pair()
        got, stats = Collector(), SourceStats()
        reader = CanReader(rx, got, stats)
        reader.start()
        assert stats.connected and stats.connects == 1
        try:
            for msg in (lgciu(T0, True, counter=1),
                        lgciu(T0 + 0.1, False, fault=True, counter=2),
                        adc(T0 + 0.125, 151.3, -1200, 140.1),
                        adc(T0 + 0.25, 0, 61_000, 0, valid=(0, 1, 0))):
                tx.send(msg)
            await wait_for(lambda: len(got.params) == 12)
        finally:
            reader.stop()
            rx.shutdown()
            tx.shutdown()
        return got, stats, threading.get_ident()

    got, stats, loop_thread = asyncio.run(main())
    assert got.threads == {loop_thread}
    by_t: dict[float, dict[str, Parameter]] = {}
    for p in got.params:
        by_t.setdefault(p.t, {})[p.name] = p
    assert sorted(by_t) == [T0, T0 + 0.1, T0 + 0.125, T0 + 0.25]
    first = by_t[T0]
    assert {n: (p.value, p.unit, p.validity, p.source) for n, p in first.items()} == {
        "air_ground": (True, "bool", Validity.VALID, "can"),
        "wow_left": (True, "bool", Validity.VALID, "can"),
        "wow_right": (True, "bool", Validity.VALID, "can"),
    }
    faulted = by_t[T0 + 0.1]
    assert faulted["air_ground"].value is False
    assert {p.validity for p in faulted.values()} == {Validity.FAULT}
    air = by_t[T0 + 0.125]
    assert air["computed_airspeed"].value == pytest.approx(151.3, abs=0.0625)
    assert air["pressure_altitude"].value == -1200
    assert air["ground_speed"].value == pytest.approx(140.1, abs=0.125)
    assert [(p.unit, p.validity) for p in air.values()] == [("kt", Validity.VALID),
                                                            ("ft", Validity.VALID),
                                                            ("kt", Validity.VALID)]
    bad = by_t[T0 + 0.25]
    assert bad["computed_airspeed"].validity is Validity.NO_COMPUTED_DATA
    assert bad["ground_speed"].validity is Validity.NO_COMPUTED_DATA
    assert bad["pressure_altitude"].validity is Validity.OUT_OF_RANGE
    assert (stats.frames, stats.no_computed_data, stats.out_of_range) == (4, 2, 1)
    assert stats.last_frame_t == T0 + 0.25
    assert not stats.connected  # after stop()


def test_bad_frames_are_counted_and_reading_goes_on() -> None:
    bad: list[can.Message] = [
        raw(LGCIU_ID, b"\x07"),                    # DLC 1 instead of 2
        raw(LGCIU_ID, b"\x07\x00\x00"),            # DLC 3
        raw(ADC_ID, bytes(7)),                     # DLC 7 instead of 8
        raw(ADC_ID, b""),                          # DLC 0
        can.Message(timestamp=T0, is_error_frame=True),
        can.Message(timestamp=T0, arbitration_id=LGCIU_ID, is_remote_frame=True, dlc=2,
                    is_extended_id=False),
    ]
    unknown = [raw(0x123, b"\x01\x02"), raw(LGCIU_ID, b"\x07\x00", extended=True),
               *(raw(i, bytes(8)) for i in UNKNOWN_IDS)]

    async def main() -> tuple[Collector, SourceStats]:
        rx, tx = virtual_pair()
        got, stats = Collector(), SourceStats()
        reader = CanReader(rx, got, stats)
        reader.start()
        try:
            for msg in [*bad, *unknown, lgciu(T0 + 1, False)]:
                tx.send(msg)
            await wait_for(lambda: len(got.params) == 3)
        finally:
            reader.stop()
            rx.shutdown()
            tx.shutdown()
        return got, stats

    got, stats = asyncio.run(main())
    assert stats.bad_frames == len(bad)
    assert stats.unknown_labels == len(unknown)
    assert stats.decode_errors == 0
    assert stats.frames == len(bad) + len(unknown) + 1
    assert [p.t for p in got.params] == [T0 + 1] * 3  # only the good frame made parameters
    assert got.last("air_ground").value is False


@settings(max_examples=300, deadline=None)
@given(arb_id=st.sampled_from([LGCIU_ID, ADC_ID, 0x0, 0x7FF, *UNKNOWN_IDS]),
       extended=st.booleans(), data=st.binary(max_size=8), error=st.booleans())
def test_any_frame_is_either_decoded_or_counted(arb_id: int, extended: bool, data: bytes,
                                                error: bool) -> None:
    got, stats = Collector(), SourceStats()
    reader = CanReader(can.Bus(interface="virtual", channel="never-started"), got, stats)
    msg = can.Message(timestamp=T0, arbitration_id=arb_id, is_extended_id=extended, data=data,
                      dlc=len(data), is_error_frame=error)
    reader._on_message(msg)  # the listener's work, without a bus
    reader.bus.shutdown()
    made = 1 if got.params else 0
    assert stats.frames == 1
    assert stats.bad_frames + stats.unknown_labels + stats.decode_errors + made == 1
    assert len(got.params) in (0, 3)


def test_a_custom_dbc_missing_a_signal_counts_decode_errors(tmp_path: Path) -> None:
    lines = can_source.default_dbc().splitlines()
    text = "\n".join(ln for ln in lines if "LGCIU_FAULT" not in ln) + "\n"
    dbc = tmp_path / "custom.dbc"
    dbc.write_text(text)
    got, stats = Collector(), SourceStats()
    reader = CanReader(can.Bus(interface="virtual", channel="never-started"), got, stats,
                       dbc_path=dbc, name="can2")
    reader._on_message(raw(LGCIU_ID, b"\x07\x00"))
    reader._on_message(adc(T0, 100, 1000, 100))
    reader.bus.shutdown()
    assert stats.decode_errors == 1
    assert {p.source for p in got.params} == {"can2"}


def test_an_unusable_dbc_is_a_source_error(tmp_path: Path) -> None:
    bus = can.Bus(interface="virtual", channel="never-started")
    try:
        with pytest.raises(SourceError, match="cannot load CAN database"):
            CanReader(bus, Collector(), SourceStats(), dbc_path=tmp_path / "missing.dbc")
        lacking = tmp_path / "lacking.dbc"
        lacking.write_text(can_source.default_dbc().split("BO_ 672")[0])
        with pytest.raises(SourceError, match="lacks ADC_DATA"):
            CanReader(bus, Collector(), SourceStats(), dbc_path=lacking)
    finally:
        bus.shutdown()


def run_into_chain(messages: Iterable[can.Message]) -> tuple[AvionicsChain, list[Event], SourceStats]:
    """Send ``messages`` over a virtual bus into CanReader -> AvionicsChain.feed; return the chain."""
    msgs = list(messages)
    chain = AvionicsChain(LabelTable.default())
    events: list[Event] = []
    chain.subscribe(events.append)
    stats = SourceStats()

    async def main() -> None:
        rx, tx = virtual_pair()
        reader = CanReader(rx, chain.feed, stats)
        reader.start()
        try:
            for m in msgs:
                tx.send(m)
            await wait_for(lambda: stats.frames == len(msgs))
        finally:
            reader.stop()
            rx.shutdown()
            tx.shutdown()

    asyncio.run(main())
    return chain, events, stats


def test_air_ground_alone_drives_the_chain_after_its_persistence() -> None:
    # 5 s on ground, then 4 s in air, LGCIU at 10 Hz; ADC at 8 Hz (its speeds feed the chain's
    # plausibility check under the same names as the serial card's).
    msgs: list[can.Message] = []
    for i in range(90):
        msgs.append(lgciu(T0 + i / 10, i < 50, counter=i))
    for i in range(72):
        msgs.append(adc(T0 + i / 8 + 0.01, 20 + 3 * i, 500, 20 + 3 * i, counter=i))
    msgs.sort(key=lambda m: m.timestamp)
    chain, events, stats = run_into_chain(msgs)
    changes = [e for e in events if isinstance(e, AirGroundChanged)]
    assert [(c.previous, c.current) for c in changes] == [("unknown", "ground"), ("ground", "air")]
    to_ground, to_air = changes
    assert T0 + 3.0 <= to_ground.t_card <= T0 + 3.6  # 3 s persistence to ground, on the 0.25 s grid
    # first air sample at T0 + 5 s, 0.5 s discrete debounce, then 2 s persistence
    assert T0 + 7.5 <= to_air.t_card <= T0 + 8.1
    assert to_air.evidence["votes"] == {"air_ground": False, "wow_left": False, "wow_right": False}
    assert to_air.evidence["persisted_s"] >= 2.0
    assert chain.ag.state is AirGround.AIR and chain.mode is Mode.FLIGHT
    assert chain.store.value("computed_airspeed") == pytest.approx(20 + 3 * 71, abs=0.0625)
    assert stats.bad_frames == stats.unknown_labels == 0


def test_a_faulted_lgciu_does_not_vote() -> None:
    msgs = [lgciu(T0 + i / 10, False) for i in range(40)]  # air long enough to decide
    msgs += [lgciu(T0 + 4 + i / 10, True, fault=True) for i in range(50)]  # "ground", but faulted
    chain, events, _ = run_into_chain(msgs)
    assert [(e.previous, e.current) for e in events if isinstance(e, AirGroundChanged)] == [
        ("unknown", "air")]
    assert chain.ag.state is AirGround.AIR
    assert chain.votes(chain.store.now) == (
        ("wow_left", None), ("wow_right", None), ("air_ground", None))
    assert chain.ag.reason == "holding: no valid air/ground source"


def test_simulated_flight_with_faults_through_the_virtual_bus() -> None:
    traj = trajectory()
    faults = CanFaults(bad_dlc_rate=0.05, unknown_id_rate=0.05, error_frame_rate=0.02,
                       lgciu_fault=[(T0 + 5, T0 + 7)], seed=7)
    planned = list(can_messages(traj, faults))
    assert [t for t, _ in planned] == sorted(t for t, _ in planned)
    assert all(m.timestamp == t for t, m in planned)
    kinds = Counter(("error" if m.is_error_frame else m.arbitration_id,
                     m.dlc == {LGCIU_ID: 2, ADC_ID: 8}.get(m.arbitration_id)) for _, m in planned)
    n_lgciu = sum(1 for _, m in planned if m.arbitration_id == LGCIU_ID)
    n_adc = sum(1 for _, m in planned if m.arbitration_id == ADC_ID)
    assert n_lgciu == 40 * 10 + 1 and n_adc == 40 * 8 + 1  # 10 Hz and 8 Hz, both ends included
    n_bad = kinds[(LGCIU_ID, False)] + kinds[(ADC_ID, False)] + kinds[("error", False)]
    n_unknown = sum(v for (k, _), v in kinds.items() if k in UNKNOWN_IDS)
    assert n_bad > 0 and n_unknown > 0

    chain = AvionicsChain(LabelTable.default())
    events: list[Event] = []
    chain.subscribe(events.append)
    stats = SourceStats()
    faulted: list[Parameter] = []

    def feed(params: list[Parameter]) -> None:
        faulted.extend(p for p in params if p.validity is Validity.FAULT)
        chain.feed(params)

    async def main() -> int:
        rx, tx = virtual_pair()
        reader = CanReader(rx, feed, stats)
        reader.start()
        try:
            sent: int = await asyncio.to_thread(play_can, iter(planned), tx, 200.0)
            await wait_for(lambda: stats.frames == sent)
        finally:
            reader.stop()
            rx.shutdown()
            tx.shutdown()
        return sent

    sent = asyncio.run(main())
    assert sent == len(planned)
    assert stats.bad_frames == n_bad and stats.unknown_labels == n_unknown
    assert faulted and all(T0 + 5 <= p.t < T0 + 7 for p in faulted)
    changes = [(e.previous, e.current) for e in events if isinstance(e, AirGroundChanged)]
    assert changes == [("unknown", "ground"), ("ground", "air")]


def test_play_can_paces_to_flight_time_times_speed() -> None:
    bus = can.Bus(interface="virtual", channel=f"pace-{uuid.uuid4().hex}")
    try:
        t0 = time.monotonic()
        n = play_can(((T0 + i / 10, lgciu(T0 + i / 10, True)) for i in range(21)), bus, speed=10.0)
        elapsed = time.monotonic() - t0
    finally:
        bus.shutdown()
    assert n == 21
    assert 0.18 <= elapsed < 0.6  # 2 s of flight at 10x


# --- the bus going away ---------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_virtual_bus_closed_under_the_reader_is_a_disconnect() -> None:
    async def main() -> SourceStats:
        rx, tx = virtual_pair()
        got, stats = Collector(), SourceStats()
        reader = CanReader(rx, got, stats)
        reader.start()
        try:
            tx.send(lgciu(T0, True))
            await wait_for(lambda: len(got.params) == 3)
            rx.shutdown()  # the receive thread's next recv raises CanOperationError
            await wait_for(lambda: not stats.connected)
        finally:
            reader.stop()
            tx.shutdown()
        return stats

    stats = asyncio.run(main())
    assert (stats.connects, stats.disconnects, stats.connected) == (1, 1, False)


class SocketBus(can.BusABC):
    """A bus with a file descriptor (like SocketCAN): frames as 'id:u32 data' datagrams."""

    def __init__(self) -> None:
        self.sock, self.peer = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.setblocking(False)
        self.failed = False
        super().__init__(channel="socketpair")
        self.channel_info = "socketpair"

    def put(self, msg: can.Message) -> None:
        self.peer.send(struct.pack("<Id", msg.arbitration_id, msg.timestamp) + bytes(msg.data))

    def _recv_internal(self, timeout: float | None) -> tuple[can.Message | None, bool]:
        if self.failed:
            raise can.CanOperationError("Network is down [Error Code 100]")
        try:
            data = self.sock.recv(64)
        except BlockingIOError:
            return None, False
        arb, t = struct.unpack_from("<Id", data)
        return can.Message(timestamp=t, arbitration_id=arb, is_extended_id=False,
                           data=data[12:]), False

    def send(self, msg: can.Message, timeout: float | None = None) -> None:
        self.put(msg)

    def fileno(self) -> int:
        return self.sock.fileno()

    def shutdown(self) -> None:
        super().shutdown()
        self.sock.close()
        self.peer.close()


def test_fd_bus_failure_is_reported_through_on_error_without_spinning_the_loop() -> None:
    async def main() -> tuple[SourceStats, list[dict[str, Any]], Collector]:
        loop = asyncio.get_running_loop()
        loop_errors: list[dict[str, Any]] = []
        loop.set_exception_handler(lambda _loop, ctx: loop_errors.append(ctx))
        bus = SocketBus()
        got, stats = Collector(), SourceStats()
        reader = CanReader(bus, got, stats)
        reader.start()  # the Notifier watches bus.fileno() with loop.add_reader (no thread)
        try:
            assert not any(t.name.startswith("Notifier") for t in threading.enumerate())
            bus.put(lgciu(T0, True))
            await wait_for(lambda: len(got.params) == 3)
            bus.failed = True
            bus.put(lgciu(T0 + 0.1, True))  # readable again: recv now raises
            await wait_for(lambda: not stats.connected)
            for i in range(5):  # still readable: nothing more happens
                bus.put(lgciu(T0 + 0.2 + i, True))
            await asyncio.sleep(0.1)
        finally:
            reader.stop()
            bus.shutdown()
        return stats, loop_errors, got

    stats, loop_errors, got = asyncio.run(main())
    assert (stats.disconnects, stats.connected, stats.frames) == (1, False, 1)
    assert loop_errors == []
    assert len(got.params) == 3


# --- opening the bus ------------------------------------------------------------------------


def test_open_bus_virtual_and_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    bus = open_bus(CanSettings(enabled=True, interface="virtual", channel="open-test"))
    try:
        assert isinstance(bus, can.BusABC)
    finally:
        bus.shutdown()
    with pytest.raises(SourceError, match="cannot open CAN bus 'no_such_interface' channel 'x'"):
        open_bus(CanSettings(enabled=True, interface="no_such_interface", channel="x"))

    seen: list[dict[str, Any]] = []

    def fake_bus(**kwargs: Any) -> can.BusABC:
        seen.append(kwargs)
        raise can.CanInitializationError("no such device")

    monkeypatch.setattr(can, "Bus", fake_bus)  # the module can_source calls
    for interface in ("pcan", "virtual", "udp_multicast", "socketcan"):
        with pytest.raises(SourceError, match="no such device"):
            open_bus(CanSettings(enabled=True, interface=interface, channel="c", bitrate=250000))
    assert [k.get("bitrate") for k in seen] == [250000, None, None, None]


# --- across processes: udp_multicast in a private network namespace ---------------------------

RECEIVER = textwrap.dedent("""
    import asyncio, json, os, subprocess, sys, time

    ns, group, quiet_s, deadline_s = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4])
    here = subprocess.run(["ip", "netns", "identify", str(os.getpid())], capture_output=True,
                          text=True).stdout.strip()
    if here != ns:  # check where we are before any socket is opened
        print(json.dumps({"error": f"not in namespace {ns!r} but {here!r}"}), flush=True)
        sys.exit(3)

    from appliance.avionics.can_source import CanReader, open_bus
    from appliance.avionics.params import SourceStats
    from appliance.errors import SourceError
    from appliance.avionics.chain import AvionicsChain
    from appliance.modes.events import AirGroundChanged
    from appliance.settings import CanSettings
    from firmware_bridge.labels import LabelTable

    async def main():
        try:
            bus = open_bus(CanSettings(enabled=True, interface="udp_multicast", channel=group))
        except SourceError as e:
            print(json.dumps({"unavailable": str(e)}), flush=True)
            return
        chain = AvionicsChain(LabelTable.default())
        changes = []
        chain.subscribe(lambda e: changes.append([e.previous, e.current])
                               if isinstance(e, AirGroundChanged) else None)
        stats, last, count = SourceStats(), {}, [0]

        def on_params(params):
            count[0] += len(params)
            last.update({p.name: [p.value, str(p.validity)] for p in params})
            chain.feed(params)

        reader = CanReader(bus, on_params, stats)
        reader.start()
        print("READY", flush=True)
        start = seen_at = time.monotonic()
        frames = 0
        while True:
            await asyncio.sleep(0.05)
            now = time.monotonic()
            if stats.frames != frames:
                frames, seen_at = stats.frames, now
            if (frames and now - seen_at > quiet_s) or now - start > deadline_s:
                break
        reader.stop()
        bus.shutdown()
        print(json.dumps({"params": count[0], "frames": stats.frames,
                          "bad_frames": stats.bad_frames, "unknown_labels": stats.unknown_labels,
                          "decode_errors": stats.decode_errors, "air_ground": str(chain.ag.state),
                          "changes": changes, "last": last}), flush=True)

    asyncio.run(main())
""")


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check, timeout=10)


def _in_ns(ns: str, *cmd: str) -> list[str]:
    """``cmd`` run in ``ns`` by a shell that first checks it is there, then execs (same PID)."""
    check = 'test "$(ip netns identify $$)" = "$0" || { echo "not in netns $0" >&2; exit 3; }'
    return ["ip", "netns", "exec", ns, "sh", "-c", f'{check}; exec "$@"', ns, *cmd]


@pytest.fixture
def netns() -> Iterable[str]:
    """A fresh network namespace: lo up with multicast, 224.0.0.0/4 routed to lo. Deleted after."""
    try:
        import msgpack  # noqa: F401  (udp_multicast needs it)
    except ImportError:
        pytest.skip("udp_multicast unavailable: msgpack is not installed")
    if "udp_multicast" not in can.interfaces.BACKENDS:
        pytest.skip("udp_multicast unavailable in this python-can")
    name = f"cantest-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    try:
        add = _ip("netns", "add", name, check=False)
    except FileNotFoundError:
        pytest.skip("no `ip` command (iproute2)")
    if add.returncode != 0:
        pytest.skip(f"cannot create a network namespace (ip netns add: {add.stderr.strip()})")
    try:
        _ip("-n", name, "link", "set", "lo", "up")
        _ip("-n", name, "link", "set", "lo", "multicast", "on")
        _ip("-n", name, "route", "add", "224.0.0.0/4", "dev", "lo")
        route = _ip("-n", name, "route", "get", GROUP).stdout
        assert " dev lo " in f" {route} ", f"multicast would not stay on the namespace's lo: {route}"
        yield name
    finally:
        _ip("netns", "del", name, check=False)


def _stop(proc: subprocess.Popen[str] | None) -> None:
    if proc is not None and proc.poll() is None:
        proc.kill()  # by its own PID: ip netns exec and sh exec into the real process
        proc.wait(5)


@pytest.mark.system
def test_simulator_to_reader_across_processes_over_udp_multicast(
        netns: str, flight_path: Path, tmp_path: Path) -> None:
    script = tmp_path / "receiver.py"
    script.write_text(RECEIVER)
    start, end, speed = "+930", "+1000", 8.0  # takeoff of AFR34ZG at ~+967..+972 s
    faults = ["bad-dlc=0.02", "unknown-id=0.02"]
    receiver = sender = None
    try:
        receiver = subprocess.Popen(_in_ns(netns, sys.executable, str(script), netns, GROUP,
                                           "1.0", "25"),
                                    cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    text=True)
        assert receiver.stdout is not None
        first = receiver.stdout.readline().strip()
        if first.startswith("{") and "unavailable" in json.loads(first):
            pytest.skip(f"udp_multicast unavailable: {json.loads(first)['unavailable']}")
        assert first == "READY", first + receiver.stderr.read() if receiver.stderr else first
        cmd = [sys.executable, "-m", "firmware_bridge.can_sim", str(flight_path),
               "--interface", "udp_multicast", "--channel", GROUP, "--speed", str(speed),
               "--start", start, "--end", end, "--layout", "integration",
               *(a for f in faults for a in ("--fault", f))]
        sender = subprocess.Popen(_in_ns(netns, *cmd), cwd=REPO, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True)
        _, err = sender.communicate(timeout=30)
        assert sender.returncode == 0, err
        out, err = receiver.communicate(timeout=30)
        assert receiver.returncode == 0, err
    finally:
        _stop(sender)
        _stop(receiver)
    result = json.loads(out.strip().splitlines()[-1])

    from firmware_bridge.recording import load
    from firmware_bridge.simulator import _parse_time
    traj = load(flight_path)
    planned = [m for _, m in can_messages(traj, CanFaults.parse(faults, traj.start),
                                          _parse_time(start, traj.start),
                                          _parse_time(end, traj.start))]
    good = [m for m in planned if m.dlc == {LGCIU_ID: 2, ADC_ID: 8}.get(m.arbitration_id)]
    assert result["frames"] == len(planned)
    assert result["params"] == 3 * len(good)
    assert result["bad_frames"] == len(planned) - len(good) - result["unknown_labels"]
    assert result["unknown_labels"] == sum(m.arbitration_id in UNKNOWN_IDS for m in planned)
    assert result["decode_errors"] == 0
    # udp_multicast stamps messages with the receive time, so persistence runs in wall time here.
    assert result["changes"] == [["unknown", "ground"], ["ground", "air"]]
    assert result["air_ground"] == "air"
    assert result["last"]["air_ground"] == [False, "valid"]
    assert result["last"]["ground_speed"][1] == "valid"
    assert result["last"]["ground_speed"][0] > 100

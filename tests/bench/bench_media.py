"""Benchmark: the appliance's media serving against Debian nginx (one worker, sendfile on), same files.

Run ``python tests/bench/bench_media.py [--quick] [--paced-s 30] [--surge-s 60]`` (``make bench``).
Both servers run on loopback as separate processes; the appliance is the real service
(``appliance run``, media on its sendfile server, portal and catalog on the passenger port) with
the per-client limits raised (every load client here is 127.0.0.1; on the aircraft each phone is
its own address). The package: 64 segments of 1 MiB and one 256 MiB file.

- (a) wrk, 200 connections, random 1 MiB segments, 10 s: MiB/s and p99;
- (b) wrk, 200 connections, random 1 MiB ranges of the 256 MiB file, 10 s: MiB/s and p99;
- (c) paced cabin: 300 clients x 2 Mbit/s (a 1 MiB segment every 4.2 s each, keep-alive): p99 of
  a segment fetch, and the server's CPU seconds (user + system, /proc) per GiB served;
- (d) surge: 300 new clients spread over the run, each loading the portal page, the catalog and
  the first segment on fresh connections: p99 of the whole load. nginx serves the same page and a
  copy of the catalog JSON as static files.

Ratios are appliance / nginx (throughput: higher is better; p99 and CPU/GiB: lower is better).
Timings are printed, never asserted. Needs Debian's nginx and wrk.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from media.manifest_writer import write_manifest  # noqa: E402

SEGMENTS = 64
MiB = 1 << 20
TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of ``pid`` and its children (nginx's worker), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    total = (int(fields[11]) + int(fields[12])) / TICKS
    try:
        kids = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        kids = []
    return total + sum(cpu_s(int(k)) for k in kids)


def make_package(root: Path) -> Path:
    pkg = root / "pkg"
    (pkg / "hls/v0").mkdir(parents=True)
    rnd = random.Random(1)
    for i in range(SEGMENTS):
        (pkg / f"hls/v0/seg_{i:05d}.ts").write_bytes(rnd.randbytes(MiB))
    (pkg / "hls/v0/index.m3u8").write_text(
        "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:4\n#EXT-X-PLAYLIST-TYPE:VOD\n"
        + "".join(f"#EXTINF:4.0,\nseg_{i:05d}.ts\n" for i in range(SEGMENTS)) + "#EXT-X-ENDLIST\n")
    (pkg / "hls/master.m3u8").write_text(
        '#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=2000000,RESOLUTION=1280x720,'
        'CODECS="avc1.4d401f,mp4a.40.2"\nv0/index.m3u8\n')
    with open(pkg / "film.mp4", "wb") as f:
        for _ in range(256):
            f.write(rnd.randbytes(MiB))
    write_manifest(pkg, {"id": "bench", "title": "Bench", "kind": "video", "languages": ["en"],
                         "licence": "test", "entry": "hls/master.m3u8"})
    return pkg


@dataclass
class Server:
    name: str
    pid: int
    media: str  # base URL of the media prefix (.../media/bench/<v16>/)
    portal: str  # portal page URL
    catalog: str  # catalog URL


def start_appliance(work: Path, pkg: Path) -> tuple[subprocess.Popen[bytes], Server]:
    pport, aport, mport = free_port(), free_port(), free_port()
    cfg = work / "appliance.toml"
    cfg.write_text(f"""
data_dir = "{work / 'data'}"
admin_token = "bench-token-0123456789"
log_level = "WARNING"
[passenger]
port = {pport}
[admin]
port = {aport}
[serial]
enabled = false
[content]
media_port = {mport}
vendor_dir = "{REPO / 'var' / 'vendor'}"
media_connections_per_client = 100000
media_max_connections = 100000
media_requests_per_s = 1000000000.0
media_burst = 1000000000.0
api_requests_per_s = 1000000000.0
api_burst = 1000000000.0
""")
    py = sys.executable
    subprocess.run([py, "-m", "appliance.cli", "content", "install", "--config", str(cfg), str(pkg)],
                   check=True, cwd=work, stdout=subprocess.DEVNULL)
    log = open(work / "appliance.log", "wb")  # noqa: SIM115 - child's lifetime
    proc = subprocess.Popen([py, "-m", "appliance.cli", "run", "--config", str(cfg)], cwd=work,
                            stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{pport}"
    deadline = time.monotonic() + 30
    while True:
        try:
            body = urllib.request.urlopen(base + "/api/v1/catalog", timeout=2).read()
            break
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                stop(proc)
                raise RuntimeError((work / "appliance.log").read_text()) from None
            time.sleep(0.2)
    m = re.search(rb'"entry":"(/media/bench/[0-9a-f]+/)', body)
    assert m, body[:200]
    return proc, Server("appliance", proc.pid, f"http://127.0.0.1:{mport}{m[1].decode()}",
                        base + "/portal/", base + "/api/v1/catalog")


def start_nginx(work: Path, pkg: Path, app: Server) -> tuple[subprocess.Popen[bytes], Server]:
    port = free_port()
    prefix = "/" + app.media.split("/", 3)[3]
    static = work / "static"
    (static / "portal").mkdir(parents=True)
    (static / "api/v1").mkdir(parents=True)
    (static / "portal/index.html").write_bytes(urllib.request.urlopen(app.portal).read())
    (static / "api/v1/catalog").write_bytes(urllib.request.urlopen(app.catalog).read())
    ng = work / "nginx"
    ng.mkdir()
    (ng / "nginx.conf").write_text(f"""
worker_processes 1;
daemon off;
error_log {ng}/error.log;
pid {ng}/nginx.pid;
events {{ worker_connections 8192; }}
http {{
  access_log off;
  sendfile on; tcp_nopush on; keepalive_timeout 75s; keepalive_requests 1000000;
  client_body_temp_path {ng}; proxy_temp_path {ng}; fastcgi_temp_path {ng};
  uwsgi_temp_path {ng}; scgi_temp_path {ng};
  types {{ video/mp2t ts; video/mp4 mp4; application/vnd.apple.mpegurl m3u8;
          text/html html; application/json json; }}
  server {{
    listen 127.0.0.1:{port} backlog=1024;
    location {prefix} {{ alias {pkg}/; }}
    location = /api/v1/catalog {{ root {static}; default_type application/json; }}
    location /portal/ {{ root {static}; index index.html; }}
  }}
}}
""")
    proc = subprocess.Popen(["nginx", "-c", str(ng / "nginx.conf")], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 10
    while True:
        try:
            urllib.request.urlopen(base + "/portal/", timeout=2).read()
            break
        except OSError:
            if time.monotonic() > deadline:
                stop(proc)
                raise
            time.sleep(0.1)
    return proc, Server("nginx", proc.pid, base + prefix, base + "/portal/", base + "/api/v1/catalog")


# -- (a), (b): wrk ---------------------------------------------------------------------------
SEG_LUA = """math.randomseed(os.time())
request = function() return wrk.format("GET", "{path}hls/v0/seg_" ..
  string.format("%05d", math.random(0, {n})) .. ".ts") end
"""
RANGE_LUA = """math.randomseed(os.time())
request = function() local s = math.random(0, {last})
  return wrk.format("GET", "{path}film.mp4", {{["Range"] = "bytes=" .. s .. "-" .. (s + 1048575)}}) end
"""


def _unit(v: str) -> float:
    m = re.match(r"([\d.]+)(us|ms|s|B|KB|MB|GB)$", v)
    assert m, v
    mult = {"us": 1e-3, "ms": 1.0, "s": 1e3, "B": 1 / MiB, "KB": 1 / 1024, "MB": 1.0, "GB": 1024.0}
    return float(m[1]) * mult[m[2]]


def wrk(srv: Server, lua: str, seconds: float, work: Path) -> dict[str, float]:
    path = "/" + srv.media.split("/", 3)[3]
    script = work / f"{srv.name}.lua"
    script.write_text(lua.format(path=path, n=SEGMENTS - 1, last=255 * MiB))
    c0 = cpu_s(srv.pid)
    out = subprocess.run(["wrk", "-t1", "-c200", f"-d{seconds:g}s", "--latency", "-s", str(script),
                          srv.media.split("/media/")[0]], capture_output=True, text=True, check=True)
    cpu = cpu_s(srv.pid) - c0
    text = out.stdout
    mib_s = _unit(re.search(r"Transfer/sec:\s+(\S+)", text)[1])  # type: ignore[index]
    p99 = _unit(re.search(r"99%\s+(\S+)", text)[1])  # type: ignore[index]
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    errors = re.search(r"Socket errors: (.*)", text)
    return {"mib_s": mib_s, "p99_ms": p99, "cpu_s_gib": cpu / max(1e-9, mib_s * seconds / 1024),
            "non2xx": float(bad[1]) if bad else 0.0, "errors": 1.0 if errors else 0.0}


# -- (c), (d): asyncio clients ----------------------------------------------------------------
async def _get(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, host: str,
               path: str) -> int:
    writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    m = re.search(rb"(?i)content-length:\s*(\d+)", head)
    n = int(m[1]) if m else 0
    await reader.readexactly(n)
    if status >= 400:
        raise RuntimeError(f"{path}: {status}")
    return n


def _split(url: str) -> tuple[str, int, str]:
    hostport, _, path = url.split("://", 1)[1].partition("/")
    host, _, port = hostport.partition(":")
    return host, int(port), "/" + path


async def paced(srv: Server, clients: int, seconds: float, rate_bps: float) -> dict[str, float]:
    host, port, prefix = _split(srv.media)
    lat: list[float] = []
    served = 0
    end = time.monotonic() + seconds
    period = MiB * 8 / rate_bps

    async def one(i: int) -> None:
        nonlocal served
        await asyncio.sleep(period * i / clients)  # spread the starts over one period
        r, w = await asyncio.open_connection(host, port)
        rnd = random.Random(i)
        try:
            nxt = time.monotonic()
            while time.monotonic() < end:
                t0 = time.monotonic()
                served += await _get(r, w, host, f"{prefix}hls/v0/seg_{rnd.randrange(SEGMENTS):05d}.ts")
                lat.append(time.monotonic() - t0)
                nxt += period
                await asyncio.sleep(max(0.0, nxt - time.monotonic()))
        finally:
            w.close()

    c0 = cpu_s(srv.pid)
    await asyncio.gather(*(one(i) for i in range(clients)))
    cpu = cpu_s(srv.pid) - c0
    lat.sort()
    return {"p99_ms": lat[int(len(lat) * 0.99)] * 1e3, "p50_ms": statistics.median(lat) * 1e3,
            "cpu_s_gib": cpu / max(1e-9, served / (1 << 30)), "gib": served / (1 << 30),
            "fetches": float(len(lat))}


async def surge(srv: Server, clients: int, seconds: float) -> dict[str, float]:
    times: list[float] = []
    failures = 0

    async def one(i: int) -> None:
        nonlocal failures
        await asyncio.sleep(seconds * i / clients)
        t0 = time.monotonic()
        try:
            for url in (srv.portal, srv.catalog, srv.media + "hls/v0/seg_00000.ts"):
                host, port, path = _split(url)
                r, w = await asyncio.open_connection(host, port)
                try:
                    await _get(r, w, host, path)
                finally:
                    w.close()
            times.append(time.monotonic() - t0)
        except (OSError, RuntimeError, asyncio.IncompleteReadError):
            failures += 1

    await asyncio.gather(*(one(i) for i in range(clients)))
    times.sort()
    return {"p99_ms": times[int(len(times) * 0.99)] * 1e3 if times else float("nan"),
            "p50_ms": statistics.median(times) * 1e3 if times else float("nan"),
            "failures": float(failures)}


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="short runs (smoke test of the bench)")
    ap.add_argument("--wrk-s", type=float, default=10.0)
    ap.add_argument("--paced-s", type=float, default=30.0)
    ap.add_argument("--surge-s", type=float, default=60.0)
    ap.add_argument("--clients", type=int, default=300)
    args = ap.parse_args()
    if args.quick:
        args.wrk_s, args.paced_s, args.surge_s = 3.0, 8.0, 6.0
    for tool in ("nginx", "wrk"):
        if shutil.which(tool) is None:
            print(f"bench_media: {tool} not installed (Debian: apt-get install nginx-light wrk)")
            return 0
    work = Path(tempfile.mkdtemp(prefix="bench-media-"))
    work.chmod(0o755)  # nginx workers run unprivileged
    procs: list[subprocess.Popen[bytes]] = []
    try:
        pkg = make_package(work)
        app_proc, app = start_appliance(work, pkg)
        procs.append(app_proc)
        ng_proc, ng = start_nginx(work, pkg, app)
        procs.append(ng_proc)
        res: dict[str, dict[str, dict[str, float]]] = {}
        for srv in (ng, app):
            r: dict[str, dict[str, float]] = {}
            r["a"] = wrk(srv, SEG_LUA, args.wrk_s, work)
            r["b"] = wrk(srv, RANGE_LUA, args.wrk_s, work)
            r["c"] = asyncio.run(paced(srv, args.clients, args.paced_s, 2e6))
            r["d"] = asyncio.run(surge(srv, args.clients, args.surge_s))
            res[srv.name] = r
            print(f"{srv.name}: {r}", flush=True)
        a, n = res["appliance"], res["nginx"]
        print(f"\nmedia serving, loopback, one worker each; wrk {args.wrk_s:g} s, paced "
              f"{args.clients} x 2 Mbit/s for {args.paced_s:g} s, surge {args.clients} clients "
              f"in {args.surge_s:g} s")
        print(f"{'':34}{'nginx':>12}{'appliance':>12}{'ratio':>8}")
        rows = [("(a) segments MiB/s", "a", "mib_s"), ("(a) segments p99 ms", "a", "p99_ms"),
                ("(a) CPU s/GiB", "a", "cpu_s_gib"),
                ("(b) ranges MiB/s", "b", "mib_s"), ("(b) ranges p99 ms", "b", "p99_ms"),
                ("(b) CPU s/GiB", "b", "cpu_s_gib"),
                ("(c) paced p99 ms", "c", "p99_ms"), ("(c) paced CPU s/GiB", "c", "cpu_s_gib"),
                ("(d) surge p99 ms", "d", "p99_ms"), ("(d) surge failures", "d", "failures")]
        for label, k, f in rows:
            nv, av = n[k][f], a[k][f]
            ratio = f"{av / nv:.2f}x" if nv else "-"
            print(f"{label:34}{nv:12.2f}{av:12.2f}{ratio:>8}")
        print(f"errors: nginx non-2xx {n['a']['non2xx'] + n['b']['non2xx']:.0f}, appliance non-2xx "
              f"{a['a']['non2xx'] + a['b']['non2xx']:.0f}")
    finally:
        for p in reversed(procs):
            stop(p)
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

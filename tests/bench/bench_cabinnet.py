"""Surge on the cabin network: 300 phones join within 60 s; p99 per step, beside the same load on loopback.

Run ``python tests/bench/bench_cabinnet.py [--phones 300] [--seconds 60]`` as root (``make bench``).

The cabin: the real service with the cabin network on in a server namespace (dnsmasq, the nftables
gate, Big Buck Bunny installed), each phone in its own namespace (see :mod:`tests.cabinnet.lab`),
created before the clock starts. Phone i starts at ``i * seconds / phones`` and runs, in its
namespace behind the guard, one shell: busybox ``udhcpc`` (asking for option 114), then curl on
fresh connections, by name through the server's DNS: the Android probe (``generate_204``, held:
302), the portal page, the catalog, the first segment of the film on the media port. Each step's
time (udhcpc: wall clock around it; curl: ``time_total``, DNS included) is collected. The phones'
processes run at ``nice 10`` (on the aircraft they have CPUs of their own).

Loopback: the same service with the cabin network off on 127.0.0.1 of a namespace of its own, the
same shell per client through the same ``ip netns exec`` and guard, without DHCP (by address, no
DNS), the same schedule. Printed: per step p50/p99 (ms) and failures
for both, and how many phones the gate holds at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from tests.cabinnet.lab import CabinLab, lab_unavailable, run  # noqa: E402
from tests.cabinnet.netservice import MEDIA, PASSENGER, NetService  # noqa: E402

FILM = REPO / "var" / "content" / "big-buck-bunny"
SEGMENT = "hls/v0/seg_00000.ts"
UA = "Dalvik/2.1.0 (Linux; U; Android 14; Pixel 8 Build/AP2A)"
# Per-address limits out of the way on both sides (on loopback every client is 127.0.0.1).
LIMITS = """media_connections_per_client = 100000
media_requests_per_s = 1000000000.0
media_burst = 1000000000.0
api_requests_per_s = 1000000000.0
api_burst = 1000000000.0"""
EDGE = """[edge.passenger]
connections_per_client = 100000"""
Result = tuple[dict[str, list[float]], dict[str, int], float]
STEPS = ("dhcp", "probe", "portal", "catalog", "segment")


def client_script(portal: str, media: str, dhcp: str) -> str:
    """The shell one client runs: prints ``STEP CODE SECONDS`` lines."""
    curl = ('curl -sS -o /dev/null -m 30 -w "%s %%{http_code} %%{time_total} %%{time_namelookup} '
            '%%{time_connect}\\n"')
    return f"""
{dhcp}
{curl % "probe"} -A "{UA}" {portal}/generate_204
{curl % "portal"} {portal}/portal/
{curl % "catalog"} {portal}/api/v1/catalog
{curl % "segment"} "{media}"
"""


def dhcp_cmd(script: Path, out: Path) -> str:
    return (f't0=$(date +%s%N); LEASE_OUT={out} busybox udhcpc -i eth0 -f -q -n -t 10 -T 2 -A 1 '
            f'-O 114 -s {script} >/dev/null 2>&1; rc=$?; t1=$(date +%s%N); '
            f'echo "dhcp $([ $rc = 0 ] && [ -s {out} ] && echo 200 || echo 0) '
            f'$(( (t1 - t0) / 1000 ))e-6"')


async def one(argv: list[str], at: float, t_start: float, results: dict[str, list[float]],
              failures: dict[str, int]) -> None:
    await asyncio.sleep(max(0.0, t_start + at - time.monotonic()))
    # The phones' processes at a lower priority: on the aircraft they have CPUs of their own; here
    # they share the server's, and the churn of a few thousand short processes must not starve it.
    proc = await asyncio.create_subprocess_exec("nice", "-n", "10", *argv,
                                                stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate()
    seen = set()
    for line in out.decode(errors="replace").splitlines():
        parts = line.split()
        if len(parts) not in (3, 5) or parts[0] not in STEPS:
            continue
        step, code, secs = parts[:3]
        seen.add(step)
        ok = code in ("200", "204", "302")
        if ok:
            results[step].append(float(secs))
            if len(parts) == 5:
                results[step + ".dns"].append(float(parts[3]))
                results[step + ".connect"].append(float(parts[4]) - float(parts[3]))
        else:
            failures[step] += 1
    for step in STEPS:
        if step not in seen and (step != "dhcp" or "dhcp" in " ".join(argv)):
            failures[step] += 1
    if proc.returncode == 97:
        raise RuntimeError(f"namespace guard refused: {err.decode()}")


async def drive(argvs: list[list[str]], seconds: float) -> Result:
    results: dict[str, list[float]] = {f"{s}{x}": [] for s in STEPS for x in ("", ".dns", ".connect")}
    failures: dict[str, int] = dict.fromkeys(STEPS, 0)
    t0 = time.monotonic()
    n = len(argvs)
    await asyncio.gather(*(one(a, seconds * i / n, t0, results, failures)
                           for i, a in enumerate(argvs)))
    return results, failures, time.monotonic() - t0


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pct(xs: list[float], q: float) -> float:
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * q))] * 1e3


def cabin(work: Path, phones: int, seconds: float,
          ) -> tuple[dict[str, list[float]], dict[str, int], float, dict[str, object]]:
    lab = CabinLab("b", work)
    svc = None
    try:
        lab.setup()
        svc = NetService(lab, work, content_extra=LIMITS, top_extra=EDGE)
        svc.install_content(FILM)
        svc.start()
        # The catalog's entry (the film's versioned path), from a first phone:
        lab.add_phone(0)
        lab.dhcp(0)
        body = lab.curl(0, f"http://portal.cabin:{PASSENGER}/api/v1/catalog").stdout
        m = re.search(r'"entry":"(/media/big-buck-bunny/[0-9a-f]+/)', body)
        assert m, body[:300]
        media = f"http://portal.cabin:{MEDIA}{m[1]}{SEGMENT}"
        print(f"creating {phones} phone namespaces ...", flush=True)
        argvs = []
        for i in range(1, phones + 1):
            ns = lab.add_phone(i)
            etc = Path(f"/etc/netns/{ns}")
            etc.mkdir(parents=True, exist_ok=True)
            (etc / "resolv.conf").write_text(f"nameserver {lab.pax_addr}\n")
            script = client_script(f"http://portal.cabin:{PASSENGER}", media,
                                   dhcp_cmd(lab.script, work / f"lease-{i}.env"))
            argvs.append([*lab.sh_guard(ns), "sh", "-c", script])
        print(f"surge: {phones} phones in {seconds:g} s ...", flush=True)
        assert svc.proc is not None
        cpu0 = cpu_s(svc.proc.pid)
        res = asyncio.run(drive(argvs, seconds))
        cpu = cpu_s(svc.proc.pid) - cpu0
        if os.environ.get("BENCH_DETAIL"):
            print(run("ip", "netns", "exec", lab.server, "nstat", "-az").stdout, flush=True)
        st = svc.network()
        return (*res, {"leases": st["leases"], "held": st["held"], "open": st["open"],
                       "state": st["state"], "service_cpu_s": round(cpu, 1)})
    finally:
        if svc is not None:
            svc.stop()
        lab.cleanup()


def loopback(work: Path, clients: int, seconds: float) -> Result:
    """The same service (cabin network off) on the loopback of a namespace of its own.

    The same clients through the same ``ip netns exec`` and guard (the harness costs the same),
    without DHCP.
    """
    ns = f"cnL{os.getpid() % 100000}"
    run("ip", "netns", "del", ns, check=False)
    run("ip", "netns", "add", ns)
    run("ip", "-n", ns, "link", "set", "lo", "up")
    p, a, m = 8080, 8081, 8082
    cfg = work / "loop.toml"
    cfg.write_text(f"""
data_dir = "{work / 'loopdata'}"
admin_token = "bench-token-0123456789"
log_level = "WARNING"
[passenger]
port = {p}
[admin]
port = {a}
[serial]
enabled = false
[content]
media_port = {m}
vendor_dir = "{REPO / 'var' / 'vendor'}"
{LIMITS}
{EDGE}
""")
    py = sys.executable
    subprocess.run([py, "-m", "appliance.cli", "content", "install", "--config", str(cfg), str(FILM)],
                   check=True, cwd=work, stdout=subprocess.DEVNULL)
    log = open(work / "loop.log", "wb")  # noqa: SIM115 - child's lifetime
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(["ip", "netns", "exec", ns, py, "-m", "tests.sync.nsguard", ns,
                             "127.0.0.1", "lo", "--", "-m", "appliance.cli", "run", "--config",
                             str(cfg)], cwd=work, stdout=log, stderr=subprocess.STDOUT, env=env)
    lab = CabinLab("L", work)  # only for its guard
    try:
        base = f"http://127.0.0.1:{p}"
        deadline = time.monotonic() + 30
        body = ""
        while time.monotonic() < deadline:
            r = run(*lab.sh_guard(ns, "127.0.0.1", "lo"), "curl", "-sS", "-m", "2",
                    base + "/api/v1/catalog", check=False)
            if r.returncode == 0 and "entry" in r.stdout:
                body = r.stdout
                break
            time.sleep(0.3)
        mm = re.search(r'"entry":"(/media/big-buck-bunny/[0-9a-f]+/)', body)
        assert mm, body[:300] + (work / "loop.log").read_text()[-2000:]
        media = f"http://127.0.0.1:{m}{mm[1]}{SEGMENT}"
        script = client_script(base, media, "")
        argv = [*lab.sh_guard(ns, "127.0.0.1", "lo"), "sh", "-c", script]
        cpu0 = cpu_s(proc.pid)
        res = asyncio.run(drive([argv for _ in range(clients)], seconds))
        print(f"loopback: service CPU {cpu_s(proc.pid) - cpu0:.1f} s", flush=True)
        return res
    finally:
        proc.terminate()
        proc.wait(20)
        run("ip", "netns", "del", ns, check=False)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--phones", type=int, default=300)
    ap.add_argument("--seconds", type=float, default=60.0)
    args = ap.parse_args()
    why = lab_unavailable()
    if why or not (FILM / "package.json").exists():
        print(f"bench_cabinnet: skipped ({why or 'no var/content/big-buck-bunny: make content'})")
        return 0
    with tempfile.TemporaryDirectory(prefix="bench-cabinnet-") as d:
        work = Path(d)
        os.chmod(work, 0o755)
        c_res, c_fail, c_wall, gate = cabin(work, args.phones, args.seconds)
        l_res, l_fail, l_wall = loopback(work, args.phones, args.seconds)
    print(f"\ncabin network surge: {args.phones} phones joining within {args.seconds:g} s "
          f"(cabin run {c_wall:.1f} s, loopback run {l_wall:.1f} s); gate at the end: {gate}")
    print(f"{'step':<10}{'cabin p50 ms':>14}{'cabin p99 ms':>14}{'fail':>6}"
          f"{'loopback p50':>14}{'loopback p99':>14}{'fail':>6}")
    for s in STEPS:
        lp = (f"{'—':>14}{'—':>14}{'—':>6}" if s == "dhcp" else
              f"{pct(l_res[s], 0.5):>14.1f}{pct(l_res[s], 0.99):>14.1f}{l_fail[s]:>6}")
        print(f"{s:<10}{pct(c_res[s], 0.5):>14.1f}{pct(c_res[s], 0.99):>14.1f}{c_fail[s]:>6}{lp}")
    print("of which (cabin / loopback, p99 ms): " + "; ".join(
        f"{s} DNS {pct(c_res[s + '.dns'], 0.99):.0f}/{pct(l_res[s + '.dns'], 0.99):.0f}, "
        f"connect {pct(c_res[s + '.connect'], 0.99):.0f}/{pct(l_res[s + '.connect'], 0.99):.0f}"
        for s in STEPS[1:]))
    ok = sum(c_fail.values()) == 0 and sum(l_fail.values()) == 0
    print("no failure" if ok else "FAILURES")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

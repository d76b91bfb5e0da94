"""The real service in the lab's server namespace, a test CA, and the world's HTTP server (tests only)."""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from .lab import REPO, CabinLab

TOKEN = "cabinnet-token-0123456789"
PASSENGER, ADMIN, MEDIA, HTTPS = 8080, 8081, 8082, 8443
RECORDING = REPO / "var" / "cache" / "AFR34ZG_CDG-TLS_2024-07-06.jsonl"


def make_ca(d: Path, name: str, ip: str) -> tuple[Path, Path, Path]:
    """A local CA and a server certificate for ``name`` and ``ip``: (ca.pem, cert.pem, key.pem)."""
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Cabin test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - dt.timedelta(hours=1)).not_valid_after(now + dt.timedelta(days=2))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False),
                         critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(ca_name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(hours=1)).not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(name),
                                                        x509.IPAddress(ipaddress.ip_address(ip))]),
                           critical=False)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    paths = d / "ca.pem", d / "cert.pem", d / "key.pem"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    paths[2].chmod(0o600)
    return paths


class NetService:
    """``appliance run`` in the lab's server namespace with the cabin network on.

    As in the image: the privileged part, ``appliance cabinnet-helper`` (dnsmasq, the gate's
    nftables table; root here), starts first and stops with the service; the service itself runs
    without any capability (:mod:`tests.cabinnet.nocaps`) and asks the helper over its socket.
    """

    def __init__(self, lab: CabinLab, workdir: Path, extra: str = "", content_extra: str = "",
                 top_extra: str = "") -> None:
        self.lab, self.workdir = lab, workdir
        self.data = workdir / "data"
        self.ca, self.cert, self.key = make_ca(workdir, "portal.cabin", lab.pax_addr)
        self.extra = extra
        self.content_extra = content_extra
        self.top_extra = top_extra  # whole tables, after [cabinnet]
        self.proc: subprocess.Popen[bytes] | None = None
        self.helper: subprocess.Popen[bytes] | None = None
        self.socket = workdir / "gate.sock"
        self.helper_log = workdir / "helper.log"
        self.card: subprocess.Popen[bytes] | None = None
        self.log_path = workdir / "service.log"

    def config(self) -> Path:
        lab = self.lab
        cfg = self.workdir / "appliance.toml"
        cfg.write_text(f"""
aircraft_id = "F-CABN"
data_dir = "{self.data}"
admin_token = "{TOKEN}"
[passenger]
host = "{lab.pax_addr}"
port = {PASSENGER}
[admin]
host = "{lab.mnt_addr}"
port = {ADMIN}
[serial]
port = "{self.workdir / 'card'}"
reconnect_s = 0.2
card_time_slack_s = 2.0
[content]
media_port = {MEDIA}
vendor_dir = "{REPO / 'var' / 'vendor'}"
{self.content_extra}
[cabinnet]
enabled = true
passenger_if = "pax0"
maintenance_if = "mnt0"
passenger_address = "{lab.pax_addr}/16"
dhcp_range = ["10.{lab.k}.0.10", "10.{lab.k}.3.250"]
lease_s = 600
tls_cert = "{self.cert}"
tls_key = "{self.key}"
https_port = {HTTPS}
poll_s = 0.2
gate_socket = "{self.socket}"
{self.extra}
{self.top_extra}
""")
        return cfg

    def install_content(self, *dirs: Path) -> None:
        cfg = self.config()
        for d in dirs:
            subprocess.run([str(REPO / ".venv/bin/appliance"), "content", "install", str(d),
                            "--config", str(cfg)], check=True, capture_output=True, timeout=120)

    def start_card(self) -> None:
        """The card simulator: the recorded flight from the gate (on the ground), real time.

        Onto a pty: no network, so it runs in this namespace.
        """
        self.card = subprocess.Popen(
            [str(REPO / ".venv/bin/card-sim"), "play", str(RECORDING), "--link",
             str(self.workdir / "card"), "--speed", "1"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def stop_card(self) -> None:
        if self.card is not None:
            self.card.terminate()
            self.card.wait(10)
            self.card = None

    def start_helper(self, cfg: Path, timeout: float = 20) -> None:
        """The privileged part, until its socket is there."""
        if self.helper is not None and self.helper.poll() is None:
            return
        self.socket.unlink(missing_ok=True)
        log = open(self.helper_log, "ab")  # noqa: SIM115 - kept open for the child's lifetime
        self.helper = self.lab.python_in(self.lab.server, self.lab.maint_addr, "mnt0",
                                         ["-m", "appliance.cli", "cabinnet-helper", "--config",
                                          str(cfg)],
                                         stdout=log, stderr=subprocess.STDOUT, cwd=self.workdir)
        deadline = time.monotonic() + timeout
        while not self.socket.exists():
            if self.helper.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"cabinnet helper not ready (exit {self.helper.poll()}):\n"
                                   + self.helper_log.read_text(errors="replace")[-3000:])
            time.sleep(0.1)

    def start(self, timeout: float = 40) -> None:
        cfg = self.config()
        self.start_helper(cfg)
        log = open(self.log_path, "ab")  # noqa: SIM115 - kept open for the child's lifetime
        self.proc = self.lab.python_in(self.lab.server, self.lab.maint_addr, "mnt0",
                                       ["-m", "tests.cabinnet.nocaps", "-m", "appliance.cli",
                                        "run", "--config", str(cfg)],
                                       stdout=log, stderr=subprocess.STDOUT, cwd=self.workdir)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"service exited {self.proc.returncode}:\n{self.log()[-4000:]}")
            try:
                if self.admin("/admin/v1/status")["bite"].get("passenger_network"):
                    return
            except (RuntimeError, ValueError, KeyError):
                pass
            time.sleep(0.3)
        raise TimeoutError(f"service not ready in {timeout} s:\n{self.log()[-4000:]}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def admin_raw(self, path: str, *args: str, token: bool = True) -> subprocess.CompletedProcess[str]:
        """Curl the admin port from the maintenance namespace."""
        lab = self.lab
        auth = ["-H", f"Authorization: Bearer {TOKEN}"] if token else []
        return lab.in_ns(lab.maint, "curl", "-sS", "-m", "10", *auth, *args,
                         f"http://{lab.mnt_addr}:{ADMIN}{path}", route_to=lab.mnt_addr, dev="m0",
                         timeout=20)

    def admin(self, path: str, *args: str) -> Any:
        res = self.admin_raw(path, *args)
        if res.returncode != 0:
            raise RuntimeError(f"admin {path}: {res.stderr}")
        return json.loads(res.stdout)

    def network(self) -> dict[str, Any]:
        st: dict[str, Any] = self.admin("/admin/v1/status")["bite"]["passenger_network"]
        return st

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20) -> int | None:
        """Stop the service, then the helper (PartOf= in the image); the service's exit status."""
        rc = _stop(self.proc, sig, timeout)
        _stop(self.helper, signal.SIGTERM, timeout)
        return rc


def _stop(proc: subprocess.Popen[bytes] | None, sig: int, timeout: float) -> int | None:
    if proc is None or proc.poll() is not None:
        return None
    proc.send_signal(sig)
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait()


class WorldServer:
    """An HTTP server in the world namespace (behind the gate) logging every request it gets."""

    def __init__(self, lab: CabinLab, workdir: Path, port: int = 8000) -> None:
        self.lab, self.port = lab, port
        self.log_path = workdir / "world.log"
        (workdir / "www").mkdir(exist_ok=True)
        (workdir / "www" / "index.html").write_text("the world\n")
        log = open(self.log_path, "ab")  # noqa: SIM115 - kept open for the child's lifetime
        self.proc = lab.python_in(lab.world, lab.up_addr, "w0",
                                  ["-m", "http.server", str(port), "--bind", lab.world_addr,
                                   "--directory", str(workdir / "www")],
                                  stdout=log, stderr=subprocess.STDOUT)

    def hits(self) -> int:
        return sum(1 for line in self.log_path.read_text(errors="replace").splitlines()
                   if '"GET ' in line)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

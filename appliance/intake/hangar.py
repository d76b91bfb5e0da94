"""``appliance hangar``: the hangar station's tool — build, sign and push bundles, see what is installed.

Commands (each has ``--help``)::

    appliance hangar keygen KEY                      new Ed25519 key: KEY (private, PEM) and KEY.pub (hex)
    appliance hangar build --kind content|software --name N --version V SRC... -o OUT.bundle
    appliance hangar keyset --version V --content PUB... --software PUB... --keys PUB... -o OUT.bundle
    appliance hangar sign OUT.bundle --key KEY [--key KEY2 ...]
    appliance hangar push OUT.bundle --url http://AIRCRAFT:8081 --token T [--no-activate]
    appliance hangar status --url ... --token T

``build`` takes content package directories (each becomes a top-level directory of the bundle)
or, for software, wheel files or a prebuilt slot directory. ``push`` resumes after any interruption
(link drop, appliance power cut, take-off): it asks the aircraft for the stored offset and sends
only the rest, with a progress bar; it exits 0 once the bundle is active (or staged with
``--no-activate``), 2 when the aircraft refused it (the reason is printed), 1 on other failures.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from .archive import build_payload
from .bundle import METADATA, PAYLOAD, Envelope, keyid, load_envelope, sign

__all__ = ["PushError", "PushResult", "add_parser", "build_bundle", "main", "push", "sign_bundle"]


def _iso(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _collect(kind: str, sources: list[Path]) -> tuple[Path, dict[str, Path]]:
    """Map bundle paths to source files."""
    files: dict[str, Path] = {}
    for src in sources:
        if src.is_dir():
            base = src.name if kind == "content" else ""
            for p in sorted(src.rglob("*")):
                if p.is_symlink():
                    raise ValueError(f"{p}: symbolic links cannot go into a bundle")
                if p.is_file():
                    rel = p.relative_to(src).as_posix()
                    files[f"{base}/{rel}" if base else rel] = p
        elif src.is_file() and kind == "software":
            files[src.name] = src
        else:
            raise ValueError(f"{src}: a content bundle takes package directories; software takes "
                             "wheels or a slot directory")
    if not files:
        raise ValueError("nothing to bundle")
    return Path("/"), files


def build_bundle(kind: str, name: str, version: int, sources: list[Path], out: Path,
                 expires_days: float = 30.0, issued: float | None = None,
                 keys: dict[str, Any] | None = None) -> Envelope:
    """Write ``out/metadata.json`` (unsigned) and ``out/payload.tar.zst``; returns the envelope.

    ``keys``: the new key set of a ``keys`` bundle (see :mod:`.hangar_keys`), signed with it.
    """
    _, files = _collect(kind, sources)
    out.mkdir(parents=True, exist_ok=True)
    stage = out / ".src"
    stage.mkdir(exist_ok=True)
    try:  # hard links keep the archive's names without copying the data
        for rel, src in files.items():
            dst = stage / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            if not dst.exists():
                try:
                    os.link(src, dst)
                except OSError:
                    dst.write_bytes(src.read_bytes())
        build_payload(stage, files, out / PAYLOAD)
    finally:
        import shutil
        shutil.rmtree(stage, ignore_errors=True)
    issued = time.time() if issued is None else issued
    signed: dict[str, Any] = {
        "_type": "bundle", "spec_version": "1.0", "name": name, "kind": kind, "version": version,
        "issued": _iso(issued), "expires": _iso(issued + expires_days * 86400),
        "payload": {"length": (out / PAYLOAD).stat().st_size, "sha256": _sha256(out / PAYLOAD),
                    "compression": "zstd"},
        "files": {rel: {"length": p.stat().st_size, "hashes": {"sha256": _sha256(p)}}
                  for rel, p in sorted(files.items())}}
    if keys is not None:
        signed["keys"] = keys
    env = Envelope(signed=signed, signatures=[])
    env.meta()  # validate now, at the hangar
    (out / METADATA).write_bytes(env.to_json())
    return env


def load_key(path: Path) -> Ed25519PrivateKey:
    """An Ed25519 private key from a PEM file (``keygen``'s output)."""
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"{path}: not an Ed25519 private key")
    return key


def sign_bundle(bundle: Path, keys: list[Path]) -> Envelope:
    """Add a signature by each key file to ``bundle/metadata.json``; returns the envelope."""
    env = load_envelope(bundle / METADATA)
    for k in keys:
        env = sign(env, load_key(k))
    (bundle / METADATA).write_bytes(env.to_json())
    return env


class PushError(Exception):
    """The push failed; ``refused`` is True when the aircraft refused the bundle (the reason)."""

    def __init__(self, message: str, refused: bool = False) -> None:
        """Keep the reason."""
        super().__init__(message)
        self.refused = refused


class _Resume(Exception):
    """The aircraft dropped our request (stalled body): resume from its stored offset."""


@dataclass
class PushResult:
    """What a push did: payload bytes sent (including re-sent), resumes, final status."""

    bytes_sent: int
    resumes: int
    status: dict[str, Any]
    installed: dict[str, Any] | None


def push(bundle: Path, url: str, token: str, *, activate: bool = True, timeout_s: float = 30.0,
         give_up_s: float = 3600.0, retry_s: float = 0.5,
         progress: Callable[[int, int], None] | None = None,
         log: Callable[[str], None] = lambda s: None) -> PushResult:
    """Push ``bundle`` to the aircraft at ``url`` until it is staged (and activated).

    Resumes after connection errors, pauses (FLIGHT) and a dropped stalled upload (408) from the
    aircraft's stored offset; ``progress(received, total)`` after each step. ``timeout_s`` bounds
    each request: keep it above the aircraft's ``intake.idle_timeout_s`` (10 s by default), the
    longest a PUT waits behind a stalled connection of the same upload before it is answered.
    Raises PushError (``refused`` for a refusal; on 507, the aircraft is short of disk space:
    the reason says how much is needed, and a later push resumes) or after ``give_up_s`` seconds
    without success.
    """
    env = load_envelope(bundle / METADATA)
    payload = bundle / PAYLOAD
    base = url.rstrip("/") + "/admin/v1/intake"
    headers = {"Authorization": f"Bearer {token}"}
    sent = resumes = 0
    deadline = time.monotonic() + give_up_s
    with httpx.Client(headers=headers, timeout=timeout_s) as client, open(payload, "rb") as f:
        def call(method: str, path: str, **kw: Any) -> dict[str, Any]:
            r = client.request(method, base + path, **kw)
            if r.status_code == 408:  # our body stalled and the aircraft dropped it: resume
                raise _Resume(r.json().get("detail", r.text))
            if r.status_code == 422:
                raise PushError(r.json().get("detail", r.text), refused=True)
            if r.status_code == 507:
                raise PushError(f"aircraft short of disk space: {r.json().get('detail', r.text)}")
            if r.status_code in (401, 403):
                raise PushError(f"not authorised: {r.text}")
            if r.status_code >= 400 and r.status_code != 409:
                raise PushError(f"{method} {path}: HTTP {r.status_code}: {r.text}")
            body: dict[str, Any] = r.json()
            body["_http"] = r.status_code
            return body

        st: dict[str, Any] | None = None
        while True:
            if time.monotonic() > deadline:
                raise PushError(f"gave up after {give_up_s:g} s")
            try:
                if st is None:
                    st = call("POST", "/uploads", json=env.model_dump(mode="json"))
                    if st["_http"] == 409:
                        log(f"aircraft paused intake: {st['detail']}")
                        st = None
                        time.sleep(retry_s)
                        continue
                bid = st["id"]
                if progress:
                    progress(st["received"], st["length"])
                if st["state"] == "receiving":
                    off = st["received"]
                    f.seek(off)
                    chunk = f.read(st["chunk_bytes"])
                    sent += len(chunk)
                    st = call("PUT", f"/uploads/{bid}", params={"offset": off}, content=chunk)
                    if st["_http"] == 409:
                        log(f"aircraft: {st['detail']}")
                        st = call("GET", f"/uploads/{bid}")
                        if st.get("paused"):
                            time.sleep(retry_s)
                    continue
                if st["state"] == "complete":
                    st = call("POST", f"/uploads/{bid}/finalize")
                    if st["_http"] == 409:
                        time.sleep(retry_s)
                        st = call("GET", f"/uploads/{bid}")
                    continue
                if st["state"] == "staged" and activate:
                    r = call("POST", f"/uploads/{bid}/activate")
                    if r["_http"] == 409:
                        log(f"aircraft: {r['detail']}")
                        time.sleep(retry_s)
                    st = call("GET", f"/uploads/{bid}")
                    continue
                if st["state"] in ("staged", "active"):
                    installed = call("GET", "/installed") if st["state"] == "active" else None
                    return PushResult(sent, resumes, st, installed)
                raise PushError(f"upload is {st['state']}: {st.get('reason')}",
                                refused=st["state"] == "refused")
            except (httpx.TransportError, ValueError, _Resume) as e:
                resumes += 1
                log(f"link lost ({type(e).__name__}: {e}); resuming")
                time.sleep(retry_s)
                st = None


def _cmd_keygen(a: argparse.Namespace) -> int:
    key = Ed25519PrivateKey.generate()
    a.key.write_bytes(key.private_bytes(Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                        serialization.NoEncryption()))
    os.chmod(a.key, 0o600)
    pub = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw).hex()
    Path(f"{a.key}.pub").write_text(pub + "\n")
    print(f"private key {a.key}, public key {a.key}.pub\n  pin in [intake.roles.<kind>] keys: {pub}"
          f"\n  key id {keyid(key.public_key())}")
    return 0


def _cmd_build(a: argparse.Namespace) -> int:
    env = build_bundle(a.kind, a.name, a.version, a.sources, a.output, a.expires_days)
    m = env.meta()
    print(f"built {a.output}: {m.kind} {m.name} v{m.version}, {len(m.files)} files, "
          f"{m.total_length()} bytes, payload {m.payload.length} bytes, expires {m.expires}")
    return 0


def _cmd_sign(a: argparse.Namespace) -> int:
    env = sign_bundle(a.bundle, a.key)
    print(f"{a.bundle}: {len(env.signatures)} signature(s): "
          + ", ".join(s.keyid[:16] for s in env.signatures))
    return 0


def _cmd_push(a: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

    console = Console(stderr=True)
    with Progress("[progress.description]{task.description}", BarColumn(), DownloadColumn(),
                  TransferSpeedColumn(), console=console) as bar:
        task = bar.add_task(f"push {a.bundle.name}", total=None)
        try:
            res = push(a.bundle, a.url, a.token, activate=not a.no_activate, give_up_s=a.give_up_s,
                       timeout_s=a.timeout_s,
                       progress=lambda done, total: bar.update(task, completed=done, total=total),
                       log=lambda s: console.print(f"[yellow]{s}"))
        except PushError as e:
            console.print(f"[red]{'refused' if e.refused else 'failed'}: {e}")
            return 2 if e.refused else 1
    st = res.status
    print(f"{st['kind']} {st['name']} v{st['version']}: {st['state']}; sent {res.bytes_sent} "
          f"payload bytes of {st['length']} ({res.resumes} resume(s))")
    return 0


def _cmd_status(a: argparse.Namespace) -> int:
    r = httpx.get(a.url.rstrip("/") + "/admin/v1/intake/installed",
                  headers={"Authorization": f"Bearer {a.token}"}, timeout=10)
    if r.status_code != 200:
        print(f"HTTP {r.status_code}: {r.text}", file=sys.stderr)
        return 1
    data = r.json()
    print(f"mode {data['mode']}, intake {'open' if data['intake_open'] else 'closed'}")
    for kind, row in sorted(data["installed"].items()):
        print(f"  {kind:8} {row['name']} v{row['version']} installed {_iso(row['installed_at'])} "
              f"signed by {', '.join(k[:12] for k in row['keyids'])}")
    if not data["installed"]:
        print("  nothing installed through intake")
    return 0


def add_parser(sub: Any) -> None:
    """Add ``hangar`` and its subcommands to the ``appliance`` CLI's subparsers."""
    p = sub.add_parser("hangar", help="hangar station: build, sign, push bundles; show installed",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    hs = p.add_subparsers(dest="hangar_cmd", required=True)
    k = hs.add_parser("keygen", help="create an Ed25519 signing key (PEM) and its public key (hex)")
    k.add_argument("key", type=Path, help="private key file to write; KEY.pub gets the public key")
    k.set_defaults(fn=_cmd_keygen)
    b = hs.add_parser("build", help="build an unsigned bundle from content packages or wheels")
    b.add_argument("--kind", choices=("content", "software"), required=True)
    b.add_argument("--name", required=True, help="bundle name (letters, digits, _.-)")
    b.add_argument("--version", type=int, required=True,
                   help="integer version; must be above the aircraft's installed one")
    b.add_argument("--expires-days", type=float, default=30.0, help="validity from now (days)")
    b.add_argument("sources", type=Path, nargs="+",
                   help="content package directories, or wheels / a slot directory (software)")
    b.add_argument("-o", "--output", type=Path, required=True, help="bundle directory to write")
    b.set_defaults(fn=_cmd_build)
    s = hs.add_parser("sign", help="add signatures (one per key file) to a bundle's metadata")
    s.add_argument("bundle", type=Path)
    s.add_argument("--key", type=Path, action="append", required=True,
                   help="private key file (PEM); repeat for a threshold of keys")
    s.set_defaults(fn=_cmd_sign)
    u = hs.add_parser("push", help="upload (resumably), stage and activate a bundle")
    u.add_argument("bundle", type=Path)
    u.add_argument("--url", required=True, help="the aircraft's admin URL, http://HOST:PORT")
    u.add_argument("--token", default=os.environ.get("APPLIANCE_ADMIN_TOKEN"),
                   help="maintenance token (default: $APPLIANCE_ADMIN_TOKEN)")
    u.add_argument("--no-activate", action="store_true", help="stop once staged")
    u.add_argument("--give-up-s", type=float, default=3600.0,
                   help="give up after this many seconds without finishing")
    u.add_argument("--timeout-s", type=float, default=30.0,
                   help="bound on each request (s); above the aircraft's intake idle timeout (10 s)")
    u.set_defaults(fn=_cmd_push)
    from .hangar_keys import add_keyset_parser
    add_keyset_parser(hs)
    t = hs.add_parser("status", help="what the aircraft has installed, and whether intake is open")
    t.add_argument("--url", required=True)
    t.add_argument("--token", default=os.environ.get("APPLIANCE_ADMIN_TOKEN"))
    t.set_defaults(fn=_cmd_status)


def main(argv: list[str] | None = None) -> int:
    """``python -m appliance.intake.hangar ...`` (the same as ``appliance hangar ...``)."""
    ap = argparse.ArgumentParser(prog="appliance")
    add_parser(ap.add_subparsers(dest="cmd", required=True))
    args = ap.parse_args(["hangar", *(sys.argv[1:] if argv is None else argv)])
    return int(args.fn(args))


if __name__ == "__main__":
    sys.exit(main())

"""appliance hangar: the hangar station's tool. Build, sign and push bundles; see what is installed.

  appliance hangar keygen KEY [--kind content|software]
        a new Ed25519 signing key: KEY (private, PEM, 0600) and KEY.pub (hex); prints the
        config lines that pin it on the aircraft (then restart the service)
  appliance hangar build --kind content|menu|software --name N --version V SRC... -o OUT.bundle
        one bundle file OUT.bundle (unsigned): content package directories; for menu one menu
        file (TOML or JSON, signed by the content keys); for software wheel files or a prebuilt
        slot directory
  appliance hangar sign OUT.bundle --key KEY [--key KEY2 ...]
  appliance hangar push OUT.bundle --url http://AIRCRAFT:8081 [--token T] [--no-activate]
  appliance hangar status --url http://AIRCRAFT:8081 [--token T]

The token defaults to $APPLIANCE_ADMIN_TOKEN. push resumes after an interruption once the
aircraft has answered (link drop, appliance power cut, take-off): it asks the aircraft for the
stored offset and sends only the rest, with a progress bar. Faults that retrying cannot fix (no
token, a wrong token, nothing listening at --url, the passenger port instead of the admin port)
end it at once with one line. Exit status: 0 once the bundle is active (or staged with
--no-activate), 2 when the aircraft refused it (the reason is printed) or on bad usage, 1 on
other failures.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from ..errors import BundleRefused
from .bundle import keyid
from .bundlefile import BundleFileError, open_bundle, pack
from .hangar import (
    PushError,
    _detail,
    _iso,
    answer_error,
    build_bundle,
    check_target,
    push,
    sign_bundle,
)

__all__ = ["add_parser", "main"]

_HELP = __doc__

class _Fail(Exception):
    """A hangar command failed: one line for the operator, and the exit status."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def _cmd_keygen(a: argparse.Namespace) -> int:
    if a.key.exists():
        raise _Fail(f"{a.key} exists: choose another name (a signing key is never overwritten)")
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    try:
        fd = os.open(a.key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(pem)
        pub = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw).hex()
        Path(f"{a.key}.pub").write_text(pub + "\n")
    except OSError as e:
        raise _Fail(f"cannot write {a.key}: {e.strerror or e}") from e
    print(f"""private key {a.key} (mode 0600: keep it in the hangar), public key {a.key}.pub
key id {keyid(key.public_key())}
To trust it, pin the public key in the aircraft's config (the file given to `appliance run
--config`, /etc/appliance/appliance.toml in the image), under the kind of bundle it signs:

  [intake.roles.{a.kind}]
  keys = ["{pub}"]  # beside the keys already pinned
  threshold = 1  # how many pinned keys must sign a bundle

The service reads the pinned keys at start: restart it afterwards (systemctl restart appliance).""")
    return 0


def _cmd_build(a: argparse.Namespace) -> int:
    out: Path = a.output
    if not 0 < a.expires_days < 36600:
        raise _Fail(f"--expires-days must be above 0 (got {a.expires_days:g}): the number of days "
                    "the aircraft will accept the bundle", 2)
    if out.is_dir():
        raise _Fail(f"{out} is a directory: -o names the bundle file to write", 2)
    work = out.with_name(f".{out.name}.build")
    import shutil
    try:
        shutil.rmtree(work, ignore_errors=True)
        env = build_bundle(a.kind, a.name, a.version, a.sources, work, a.expires_days)
        pack(work, out)
    except (ValueError, OSError, BundleRefused, BundleFileError) as e:
        raise _Fail(str(e.strerror if isinstance(e, OSError) and not e.filename else e)) from e
    finally:
        shutil.rmtree(work, ignore_errors=True)
    m = env.meta()
    print(f"built {out}: {m.kind} {m.name} v{m.version}, {len(m.files)} files, "
          f"{m.total_length()} bytes, payload {m.payload.length} bytes, expires {m.expires}")
    return 0


def _cmd_sign(a: argparse.Namespace) -> int:
    try:
        env = sign_bundle(a.bundle, a.key)
    except (BundleFileError, BundleRefused) as e:
        raise _Fail(str(e)) from e
    except (OSError, ValueError) as e:
        raise _Fail(f"cannot sign with {', '.join(map(str, a.key))}: {e}") from e
    print(f"{a.bundle}: {len(env.signatures)} signature(s): "
          + ", ".join(s.keyid[:16] for s in env.signatures))
    return 0


def _cmd_push(a: argparse.Namespace) -> int:
    for opt, v in (("--give-up-s", a.give_up_s), ("--timeout-s", a.timeout_s)):
        if not 0 < v < float("inf"):
            raise _Fail(f"{opt} must be above 0 (got {v:g})", 2)
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

    try:  # the bundle and the target first: no progress bar for a push that cannot start
        check_target(a.url, a.token)
        open_bundle(a.bundle)
    except PushError as e:
        raise _Fail(str(e), 2) from e
    except BundleFileError as e:
        raise _Fail(str(e), 2) from e
    console = Console(stderr=True, highlight=False)
    bar = Progress("[progress.description]{task.description}", BarColumn(), DownloadColumn(),
                   TransferSpeedColumn(), console=console, transient=True,
                   disable=not console.is_terminal)
    try:
        with bar:
            task = bar.add_task(f"push {a.bundle.name}", total=None)
            res = push(a.bundle, a.url, a.token, activate=not a.no_activate,
                       give_up_s=a.give_up_s, timeout_s=a.timeout_s,
                       progress=lambda done, total: bar.update(task, completed=done, total=total),
                       log=lambda s: console.print(f"[yellow]{s}", markup=True))
    except PushError as e:
        raise _Fail(f"refused: {e}" if e.refused else str(e), 2 if e.refused else 1) from e
    st = res.status
    print(f"{st['kind']} {st['name']} v{st['version']}: {st['state']}; sent {res.bytes_sent} "
          f"payload bytes of {st['length']} ({res.resumes} resume(s))")
    return 0


def _cmd_status(a: argparse.Namespace) -> int:
    try:
        check_target(a.url, a.token)
        r = httpx.get(a.url.rstrip("/") + "/admin/v1/intake/installed",
                      headers={"Authorization": f"Bearer {a.token.strip()}"}, timeout=10)
        err = answer_error(r, a.url, "/installed")
        if err is not None:
            raise err
        if r.status_code != 200:
            raise PushError(f"the aircraft answered HTTP {r.status_code}: {_detail(r)}")
        data = r.json()
    except PushError as e:
        raise _Fail(str(e)) from e
    except httpx.HTTPError as e:
        raise _Fail(f"cannot reach {a.url} ({e}): is the aircraft up, and --url its admin "
                    "port (8081 by default)?") from e
    except ValueError as e:
        raise _Fail(f"{a.url} did not answer JSON: is --url the aircraft's admin port?") from e
    print(f"mode {data['mode']}, intake {'open' if data['intake_open'] else 'closed'}")
    for kind, row in sorted(data["installed"].items()):
        print(f"  {kind:8} {row['name']} v{row['version']} installed {_iso(row['installed_at'])} "
              f"signed by {', '.join(k[:12] for k in row['keyids'])}")
    if not data["installed"]:
        print("  nothing installed through intake")
    return 0


def _run(fn: Callable[[argparse.Namespace], int], name: str) -> Callable[[argparse.Namespace], int]:
    """``fn`` with its failures as one line on stderr (``appliance hangar NAME: ...``)."""
    def run(a: argparse.Namespace) -> int:
        try:
            return fn(a)
        except _Fail as e:
            print(f"appliance hangar {name}: {e}", file=sys.stderr)
            return e.code
    return run


def add_parser(sub: Any) -> None:
    """Add ``hangar`` and its subcommands to the ``appliance`` CLI's subparsers."""
    p = sub.add_parser("hangar", help="hangar station: build, sign, push bundles; show installed",
                       description=_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    hs = p.add_subparsers(dest="hangar_cmd", required=True)
    k = hs.add_parser("keygen", help="create an Ed25519 signing key (PEM) and its public key (hex)",
                      description="Create an Ed25519 signing key and print how to pin its public "
                                  "key in the aircraft's config (then restart the service).")
    k.add_argument("key", type=Path, help="private key file to write; KEY.pub gets the public key")
    k.add_argument("--kind", choices=("content", "software"), default="content",
                   help="the kind of bundle the key will sign (for the printed config snippet)")
    k.set_defaults(fn=_run(_cmd_keygen, "keygen"))
    b = hs.add_parser("build", help="build an unsigned bundle file from content packages or wheels")
    b.add_argument("--kind", choices=("content", "menu", "software"), required=True,
                   help="content: package directories; menu: one menu file (.toml/.json); "
                        "software: wheels or a slot directory")
    b.add_argument("--name", required=True, help="bundle name (letters, digits, _.-)")
    b.add_argument("--version", type=int, required=True,
                   help="integer version; must be above the aircraft's installed one")
    b.add_argument("--expires-days", type=float, default=30.0,
                   help="validity from now, in days (above 0; default 30)")
    b.add_argument("sources", type=Path, nargs="+",
                   help="content package directories, a menu file, or wheels / a slot "
                        "directory (software)")
    b.add_argument("-o", "--output", type=Path, required=True,
                   help="the bundle file to write (one file: payload and metadata)")
    b.set_defaults(fn=_run(_cmd_build, "build"))
    s = hs.add_parser("sign", help="add signatures (one per key file) to a bundle's metadata")
    s.add_argument("bundle", type=Path, help="the bundle file (or a bundle directory)")
    s.add_argument("--key", type=Path, action="append", required=True,
                   help="private key file (PEM); repeat for a threshold of keys")
    s.set_defaults(fn=_run(_cmd_sign, "sign"))
    u = hs.add_parser("push", help="upload (resumably), stage and activate a bundle")
    u.add_argument("bundle", type=Path, help="the signed bundle file (or a bundle directory)")
    u.add_argument("--url", required=True,
                   help="the aircraft's admin URL, http://HOST:PORT (admin port, 8081 by default)")
    u.add_argument("--token", default=os.environ.get("APPLIANCE_ADMIN_TOKEN"),
                   help="maintenance token (default: $APPLIANCE_ADMIN_TOKEN)")
    u.add_argument("--no-activate", action="store_true", help="stop once staged")
    u.add_argument("--give-up-s", type=float, default=3600.0,
                   help="give up after this many seconds without finishing (default 3600)")
    u.add_argument("--timeout-s", type=float, default=30.0,
                   help="bound on each request (s); above the aircraft's intake idle timeout (10 s)")
    u.set_defaults(fn=_run(_cmd_push, "push"))
    from .hangar_keys import add_keyset_parser

    add_keyset_parser(hs)
    t = hs.add_parser("status", help="what the aircraft has installed, and whether intake is open")
    t.add_argument("--url", required=True,
                   help="the aircraft's admin URL, http://HOST:PORT (admin port, 8081 by default)")
    t.add_argument("--token", default=os.environ.get("APPLIANCE_ADMIN_TOKEN"),
                   help="crew or maintenance token (default: $APPLIANCE_ADMIN_TOKEN)")
    t.set_defaults(fn=_run(_cmd_status, "status"))


def main(argv: list[str] | None = None) -> int:
    """The hangar commands alone (``appliance hangar ...`` without ``hangar``)."""
    ap = argparse.ArgumentParser(prog="appliance")
    add_parser(ap.add_subparsers(dest="cmd", required=True))
    args = ap.parse_args(["hangar", *(sys.argv[1:] if argv is None else argv)])
    return int(args.fn(args))

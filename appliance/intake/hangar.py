"""The hangar station's library: build, sign and push bundles (the commands are in .hangar_cli).

- ``build_bundle(kind, name, version, sources, out_dir)``: an unsigned bundle directory
  (``metadata.json`` + ``payload.tar.zst``); ``bundlefile.pack`` makes it the one file that
  ``appliance hangar build -o OUT.bundle`` writes.
- ``sign_bundle(bundle, key_files)``: adds signatures (bundle file or directory).
- ``push(bundle, url, token)``: uploads resumably, stages and activates. It retries only what
  retrying can fix (a lost link after the aircraft answered once, a dropped stalled body, a busy or
  restarting aircraft, a pause in FLIGHT) and fails at once, with one line, on everything else
  (no token, a refused token, nothing listening at ``url``, the passenger port): PushError.
- ``answer_error``/``check_target``: that classification, shared with ``hangar status``.
"""

from __future__ import annotations

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

from ..errors import BundleRefused
from .archive import build_payload
from .bundle import METADATA, PAYLOAD, Envelope, load_envelope, sign
from .bundlefile import BundleFileError, open_bundle, write_metadata

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
    if kind == "menu":
        return Path("/"), _menu_file(sources)
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


def _menu_file(sources: list[Path]) -> dict[str, Path]:
    """A menu bundle's one file: ``menu.toml`` or ``menu.json`` from the source file given.

    Its syntax is checked here (TOML or JSON with an ``item`` list); the aircraft checks every
    item (SKU, names, price, currency, stock) when it activates the bundle.
    """
    if len(sources) != 1 or not sources[0].is_file() or sources[0].suffix not in (".toml", ".json"):
        raise ValueError("a menu bundle takes one menu file, .toml or .json")
    src = sources[0]
    import json
    import tomllib
    try:
        data = json.loads(src.read_bytes()) if src.suffix == ".json" else \
            tomllib.loads(src.read_text())
    except (ValueError, UnicodeDecodeError) as e:
        raise ValueError(f"{src}: {e}") from e
    if not isinstance(data, dict) or not isinstance(data.get("item", data.get("items")), list):
        raise ValueError(f"{src}: a menu file holds a list of items ([[item]] in TOML)")
    return {f"menu{src.suffix}": src}


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
    """Add a signature by each key file to the bundle's metadata; returns the envelope.

    ``bundle`` is a bundle file or directory (:mod:`.bundlefile`). Raises BundleFileError (not a
    bundle), BundleRefused (malformed metadata), OSError or ValueError (a key file).
    """
    env = load_envelope(open_bundle(bundle).metadata)
    for k in keys:
        env = sign(env, load_key(k))
    write_metadata(bundle, env.to_json())
    return env


class PushError(Exception):
    """The push failed; ``refused`` is True when the aircraft refused the bundle (the reason)."""

    def __init__(self, message: str, refused: bool = False) -> None:
        """Keep the reason."""
        super().__init__(message)
        self.refused = refused


class _Resume(Exception):
    """A fault that retrying fixes: a dropped stalled body (408), a busy or restarting aircraft."""


#: HTTP answers that retrying fixes: our stalled body was dropped, or the aircraft (or a proxy in
#: front of it) is busy or restarting.
_RETRY_STATUS = frozenset({408, 429, 502, 503, 504})


def _detail(r: httpx.Response) -> str:
    """The ``detail`` of a JSON error answer, else the start of its text."""
    try:
        body = r.json()
    except ValueError:
        return r.text.strip()[:200]
    return str(body.get("detail", body)) if isinstance(body, dict) else str(body)[:200]


def answer_error(r: httpx.Response, url: str, path: str) -> PushError | None:
    """The one-line PushError for an answer retrying cannot fix, or None (2xx, 409, retryable).

    401: the token is not the aircraft's; 403: its role may not act; 404 on the intake's own
    routes: ``url`` is not the aircraft's admin port; 422: the bundle is refused (the reason);
    507: the aircraft is short of disk space (a later push resumes).
    """
    code = r.status_code
    if code < 400 or code == 409 or code in _RETRY_STATUS:
        return None
    if code == 401:
        return PushError(f"the aircraft at {url} did not accept the token (HTTP 401): use its "
                         "admin_token (--token or $APPLIANCE_ADMIN_TOKEN) or a maintenance session")
    if code == 403:
        return PushError(f"the token may not do this (HTTP 403: {_detail(r)}): a maintenance "
                         "token is needed")
    if code == 404 and not path.startswith("/uploads/"):
        return PushError(f"{url} has no hangar intake (HTTP 404 on /admin/v1/intake{path}): "
                         "--url must be the aircraft's admin port (8081 by default), not the "
                         "passenger port")
    if code == 422:
        return PushError(_detail(r), refused=True)
    if code == 507:
        return PushError(f"aircraft short of disk space: {_detail(r)}")
    return PushError(f"{path}: the aircraft answered HTTP {code}: {_detail(r)}")


def check_target(url: str, token: str | None) -> None:
    """Refuse an unusable ``url`` or an empty ``token`` before any request (PushError)."""
    if not token or not token.strip():
        raise PushError("no token: pass --token or set APPLIANCE_ADMIN_TOKEN (the aircraft's "
                        "admin_token, or a maintenance session token)")
    if any(c.isspace() for c in token):
        raise PushError("the token contains white space: check --token / $APPLIANCE_ADMIN_TOKEN")
    try:
        u = httpx.URL(url)
    except httpx.InvalidURL as e:
        raise PushError(f"--url {url!r}: {e}") from e
    if u.scheme not in ("http", "https") or not u.host:
        raise PushError(f"--url {url!r}: give the aircraft's admin URL, http://HOST:PORT")


@dataclass
class PushResult:
    """What a push did: payload bytes sent (including re-sent), resumes, final status."""

    bytes_sent: int
    resumes: int
    status: dict[str, Any]
    installed: dict[str, Any] | None


def push(bundle: Path, url: str, token: str, *, activate: bool = True, timeout_s: float = 30.0,
         give_up_s: float = 3600.0, retry_s: float = 0.5, max_retry_s: float = 5.0,
         progress: Callable[[int, int], None] | None = None,
         log: Callable[[str], None] = lambda s: None) -> PushResult:
    """Push ``bundle`` (file or directory) to the aircraft at ``url`` until staged (and activated).

    Retries only what retrying can fix: after the aircraft has answered once, a lost connection,
    a timeout, a dropped stalled upload (408) or a busy/restarting aircraft (429, 502-504) resume
    from the aircraft's stored offset (waits from ``retry_s`` doubling to ``max_retry_s``), and
    pauses (409: FLIGHT) wait. Everything else fails at once with one line: a missing or empty
    token, a bundle that is not one, a refused connection before any answer (wrong host or
    port), 401/403 (token), 404 (not the admin port), an answer that is not JSON.
    ``progress(received, total)`` after each step. ``timeout_s`` bounds each request: keep it
    above the aircraft's ``intake.idle_timeout_s`` (10 s by default), the longest a PUT waits
    behind a stalled connection of the same upload before it is answered.
    Raises PushError (``refused`` for a refusal; on 507, the aircraft is short of disk space:
    the reason says how much is needed, and a later push resumes) or after ``give_up_s`` seconds
    without success.
    """
    check_target(url, token)
    try:
        src = open_bundle(bundle)
        env = load_envelope(src.metadata)
    except (BundleFileError, BundleRefused) as e:
        raise PushError(str(e)) from e
    base = url.rstrip("/") + "/admin/v1/intake"
    headers = {"Authorization": f"Bearer {token.strip()}"}
    sent = resumes = 0
    contacted = False
    wait = retry_s
    deadline = time.monotonic() + give_up_s
    with httpx.Client(headers=headers, timeout=timeout_s) as client, \
            open(src.payload_path, "rb") as f:
        def call(method: str, path: str, **kw: Any) -> dict[str, Any]:
            nonlocal contacted
            r = client.request(method, base + path, **kw)
            contacted = True
            if r.status_code in _RETRY_STATUS:
                raise _Resume(f"HTTP {r.status_code}: {_detail(r)}")
            err = answer_error(r, url, path)
            if err is not None:
                raise err
            try:
                body: dict[str, Any] = r.json()
            except ValueError:
                raise PushError(f"{url} answered {path} with something that is not JSON: is "
                                "--url the aircraft's admin port?") from None
            if not isinstance(body, dict):
                raise PushError(f"{url} answered {path} with an unexpected body: is --url the "
                                "aircraft's admin port?")
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
                wait = retry_s
                bid = st["id"]
                if progress:
                    progress(st["received"], st["length"])
                if st["state"] == "receiving":
                    off = st["received"]
                    f.seek(src.payload_offset + off)
                    chunk = f.read(min(st["chunk_bytes"], src.payload_length - off))
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
            except (httpx.UnsupportedProtocol, httpx.LocalProtocolError) as e:
                raise PushError(f"cannot send to {url}: {e}") from e
            except httpx.ConnectError as e:
                if not contacted:  # nothing listens there: a wrong host or port, not a link fault
                    raise PushError(f"cannot connect to {url} ({e}): is the aircraft up, and "
                                    "--url its admin port (8081 by default)?") from e
                resumes += 1
                log(f"link lost ({type(e).__name__}: {e}); resuming in {wait:g} s")
                time.sleep(wait)
                wait = min(wait * 2, max_retry_s)
                st = None
            except (httpx.TransportError, _Resume) as e:
                resumes += 1
                log(f"link lost ({type(e).__name__}: {e}); resuming in {wait:g} s")
                time.sleep(wait)
                wait = min(wait * 2, max_retry_s)
                st = None


def add_parser(sub: Any) -> None:
    """Add ``hangar`` and its subcommands to the ``appliance`` CLI's subparsers (see .hangar_cli)."""
    from .hangar_cli import add_parser as add

    add(sub)


def main(argv: list[str] | None = None) -> int:
    """``python -m appliance.intake.hangar ...`` (the same as ``appliance hangar ...``)."""
    from .hangar_cli import main as run

    return run(argv)


if __name__ == "__main__":
    sys.exit(main())

"""The operators' tools as a hangar operator and a maintainer use them (issue 14).

Each case runs the real command line as a subprocess; where a service is involved, against the
real service (``appliance run``) on loopback. Each failure is one clear line on stderr (no
traceback, no retry loop) and a non-zero exit status.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import tarfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.service import TOKEN, Service, free_port
from tests.intake.helpers import make_book

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def run(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None,
        timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """``appliance ARGS`` as the operator runs it (its own environment without our token)."""
    base = {k: v for k, v in os.environ.items()
            if not k.startswith(("APPLIANCE_", "GROUND_RECEIVER_"))}
    return subprocess.run([sys.executable, "-m", "appliance.cli", *args], capture_output=True,
                          text=True, timeout=timeout, env={**base, **(env or {})}, cwd=cwd)


def one_line(r: subprocess.CompletedProcess[str]) -> str:
    """The failure's message: exactly one non-empty line on stderr, no traceback."""
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, f"expected one line, got:\n{r.stderr}"
    assert "Traceback" not in r.stderr and "link lost" not in r.stderr
    return lines[0]


@pytest.fixture(scope="module")
def hangar(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Service, Path]]:
    """A real service with a content key pinned (made by ``hangar keygen``), and the key."""
    tmp = tmp_path_factory.mktemp("hangar")
    key = tmp / "content.key"
    r = run("hangar", "keygen", str(key))
    assert r.returncode == 0, r.stderr
    pub = (tmp / "content.key.pub").read_text().strip()
    svc = Service(tmp / "aircraft", extra_config=(
        f'[intake.roles.content]\nkeys = ["{pub}"]\nthreshold = 1\n'))
    svc.workdir.mkdir()
    svc.start(timeout=60)
    try:
        yield svc, key
    finally:
        svc.stop()


def _bundle(tmp: Path, key: Path | None, version: int = 1) -> Path:
    """A signed bundle file made with the CLI (build, then sign)."""
    src = make_book(tmp / f"src{version}", f"book-{version}", f"text {version}")
    out = tmp / f"books-v{version}.bundle"
    r = run("hangar", "build", "--kind", "content", "--name", "books", "--version", str(version),
            str(src), "-o", str(out))
    assert r.returncode == 0, r.stderr
    if key is not None:
        r = run("hangar", "sign", str(out), "--key", str(key))
        assert r.returncode == 0, r.stderr
    return out


@pytest.fixture(scope="module")
def signed(hangar: tuple[Service, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A signed bundle file for the push failures (made in-process: the push is under test)."""
    from appliance.intake.bundlefile import pack
    from appliance.intake.hangar import build_bundle, sign_bundle

    tmp = tmp_path_factory.mktemp("signed")
    src = make_book(tmp / "src", "book-9", "text 9")
    build_bundle("content", "books", 9, [src], tmp / "dir")
    pack(tmp / "dir", tmp / "books-v9.bundle")
    sign_bundle(tmp / "books-v9.bundle", [hangar[1]])
    return tmp / "books-v9.bundle"


# --- hangar: build, sign, push -----------------------------------------------------------------

def test_build_writes_the_file_named_and_push_installs_it(hangar: tuple[Service, Path],
                                                         tmp_path: Path) -> None:
    svc, key = hangar
    out = _bundle(tmp_path, key)
    assert out.is_file(), "build -o OUT.bundle must make the file OUT.bundle"
    with tarfile.open(out) as tar:
        assert tar.getnames() == ["payload.tar.zst", "metadata.json"]
    r = run("hangar", "push", str(out), "--url", f"http://127.0.0.1:{svc.admin_port}",
            "--token", TOKEN)
    assert r.returncode == 0, r.stderr
    assert "content books v1: active" in r.stdout
    r = run("hangar", "status", "--url", f"http://127.0.0.1:{svc.admin_port}",
            env={"APPLIANCE_ADMIN_TOKEN": TOKEN})
    assert r.returncode == 0 and "books v1" in r.stdout, r.stderr


@pytest.mark.parametrize("cmd", ["push", "sign"])
def test_a_missing_bundle_is_one_line(cmd: str, tmp_path: Path) -> None:
    missing = tmp_path / "nope.bundle"
    extra = (["--url", "http://127.0.0.1:9", "--token", "t"] if cmd == "push"
             else ["--key", str(tmp_path / "k")])
    r = run("hangar", cmd, str(missing), *extra)
    assert r.returncode != 0
    assert one_line(r) == f"appliance hangar {cmd}: {missing}: no such file or directory"


def test_build_with_zero_expiry_days_is_one_line(tmp_path: Path) -> None:
    src = make_book(tmp_path, "b", "x")
    r = run("hangar", "build", "--kind", "content", "--name", "n", "--version", "1", str(src),
            "-o", str(tmp_path / "o.bundle"), "--expires-days", "0")
    assert r.returncode == 2
    assert one_line(r).startswith("appliance hangar build: --expires-days must be above 0")
    assert not (tmp_path / "o.bundle").exists()


def test_push_with_a_wrong_token_names_the_token(hangar: tuple[Service, Path],
                                                 signed: Path) -> None:
    svc, _ = hangar
    r = run("hangar", "push", str(signed), "--url",
            f"http://127.0.0.1:{svc.admin_port}", "--token", "not-the-token")
    assert r.returncode == 1
    line = one_line(r)
    assert "did not accept the token (HTTP 401)" in line and "APPLIANCE_ADMIN_TOKEN" in line
    assert "admin token required" not in line


@pytest.mark.parametrize("token", ["", None])
def test_push_without_a_token_stops_at_once(hangar: tuple[Service, Path], signed: Path,
                                            token: str | None) -> None:
    svc, _ = hangar
    args = ["--token", token] if token is not None else []
    r = run("hangar", "push", str(signed), "--url",
            f"http://127.0.0.1:{svc.admin_port}", *args)
    assert r.returncode == 2
    assert one_line(r).startswith("appliance hangar push: no token: pass --token or set "
                                  "APPLIANCE_ADMIN_TOKEN")


def test_push_to_a_port_where_nothing_listens_stops_at_once(signed: Path) -> None:
    port = free_port()
    r = run("hangar", "push", str(signed), "--url", f"http://127.0.0.1:{port}",
            "--token", TOKEN)
    assert r.returncode == 1
    line = one_line(r)
    assert line.startswith(f"appliance hangar push: cannot connect to http://127.0.0.1:{port}")
    assert "admin port" in line


def test_push_to_the_passenger_port_says_so(hangar: tuple[Service, Path], signed: Path) -> None:
    svc, _ = hangar
    r = run("hangar", "push", str(signed), "--url",
            f"http://127.0.0.1:{svc.passenger_port}", "--token", TOKEN)
    assert r.returncode == 1
    line = one_line(r)
    assert "has no hangar intake (HTTP 404" in line and "not the passenger port" in line


def test_keygen_says_where_to_pin_and_to_restart(tmp_path: Path) -> None:
    r = run("hangar", "keygen", str(tmp_path / "sw.key"), "--kind", "software")
    assert r.returncode == 0, r.stderr
    pub = (tmp_path / "sw.key.pub").read_text().strip()
    assert "[intake.roles.software]" in r.stdout and f'keys = ["{pub}"]' in r.stdout
    assert "restart" in r.stdout and "--config" in r.stdout
    assert oct((tmp_path / "sw.key").stat().st_mode & 0o777) == "0o600"
    again = run("hangar", "keygen", str(tmp_path / "sw.key"))
    assert again.returncode == 1 and "exists" in one_line(again)


# --- appliance status and --help -------------------------------------------------------------

def test_status_without_config_names_config_and_token_variable(hangar: tuple[Service, Path],
                                                               tmp_path: Path) -> None:
    svc, _ = hangar
    r = run("status", env={"APPLIANCE_ADMIN__PORT": str(svc.admin_port)}, cwd=tmp_path)
    assert r.returncode == 1
    line = one_line(r)
    assert "HTTP 401" in line and "--config" in line and "APPLIANCE_ADMIN_TOKEN" in line
    ok = run("status", env={"APPLIANCE_ADMIN__PORT": str(svc.admin_port),
                            "APPLIANCE_ADMIN_TOKEN": TOKEN}, cwd=tmp_path)
    assert ok.returncode == 0 and '"mode"' in ok.stdout, ok.stderr


def test_status_with_nothing_listening_is_one_line(tmp_path: Path) -> None:
    port = free_port()
    r = run("status", env={"APPLIANCE_ADMIN__PORT": str(port)}, cwd=tmp_path)
    assert r.returncode == 1
    assert f"cannot reach http://127.0.0.1:{port}/admin/v1/status" in one_line(r)


def _parsers(ap: object) -> Iterator[tuple[str, object]]:
    import argparse

    assert isinstance(ap, argparse.ArgumentParser)
    yield ap.prog, ap
    for act in ap._actions:
        if isinstance(act, argparse._SubParsersAction):
            for sub in act.choices.values():
                yield from _parsers(sub)


def test_every_command_and_option_has_help_without_rest_markup() -> None:
    import argparse

    from appliance.cli import build_parser

    missing = []
    for prog, p in _parsers(build_parser()):
        assert isinstance(p, argparse.ArgumentParser)
        text = p.format_help()
        assert "``" not in text and ":class:" not in text, f"{prog} --help shows reST:\n{text}"
        for act in p._actions:
            if isinstance(act, argparse._SubParsersAction):
                missing += [f"{prog} {c.dest}" for c in act._choices_actions if not c.help]
            elif not act.help:
                missing.append(f"{prog} {'/'.join(act.option_strings) or act.dest}")
    assert not missing, f"no help text: {missing}"
    for cmd in (["media", "package", "--help"], ["ground-receiver", "serve", "--help"]):
        out = subprocess.run([str(BIN / cmd[0]), *cmd[1:]], capture_output=True, text=True,
                             timeout=60).stdout
        assert "``" not in out and "usage:" in out


# --- media package ---------------------------------------------------------------------------

def test_media_package_bad_id_is_one_line_before_any_encoding(tmp_path: Path) -> None:
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(b"never read")
    r = subprocess.run([str(BIN / "media"), "package", str(clip), "--out", str(tmp_path / "o"),
                        "--id", "Big Buck!", "--title", "T", "--licence", "CC0"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    line = one_line(r)
    assert line.startswith("media package: --id 'Big Buck!' is not valid: a-z, 0-9 and '-'")
    assert "pydantic" not in r.stderr and "http" not in r.stderr
    assert not (tmp_path / "o").exists()


def test_media_package_reports_progress_from_ffmpeg(tmp_path: Path) -> None:
    if shutil.which("ffmpeg") is None:
        pytest.skip("Debian ffmpeg is not installed")
    clip = tmp_path / "clip.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc=size=160x120:rate=10",
                    "-t", "12", "-pix_fmt", "yuv420p", str(clip)], check=True, timeout=60)
    r = subprocess.run([str(BIN / "media"), "package", str(clip), "--out", str(tmp_path / "o"),
                        "--id", "clip", "--title", "Clip", "--licence", "CC0"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    pct = [int(m.group(1)) for m in re.finditer(r"^media: encoding clip\.mp4 (\d+)% \(", r.stderr,
                                                  re.M)]
    assert len(pct) >= 3 and pct == sorted(pct) and pct[-1] == 100, r.stderr
    assert len(pct) <= 25, "a line per 10 % (or per 15 s), not a flood"


# --- ground receiver -------------------------------------------------------------------------

def test_ground_receiver_without_config_keeps_its_database_in_the_xdg_state_dir(
        tmp_path: Path) -> None:
    cwd, state = tmp_path / "cwd", tmp_path / "state"
    cwd.mkdir()
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("GROUND_RECEIVER_")}
    proc = subprocess.Popen([str(BIN / "ground-receiver"), "serve", "--port", str(port)],
                            cwd=cwd, env={**env, "XDG_STATE_HOME": str(state)},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        for _ in range(300):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/health", timeout=2) as r:
                    assert r.status == 200
                    break
            except OSError:
                assert proc.poll() is None, proc.communicate()[0]
                time.sleep(0.1)
    finally:
        proc.terminate()
        out = proc.communicate(timeout=30)[0]
    assert list(cwd.iterdir()) == [], "the receiver wrote into the current directory"
    assert (state / "ground-receiver" / "ground.db").is_file(), out
    assert str(state / "ground-receiver" / "ground.db") in out


# --- make run / appliance demo ---------------------------------------------------------------

def test_demo_refuses_a_busy_port_before_printing_urls(tmp_path: Path) -> None:
    """The demo honours APPLIANCE_CONTENT__MEDIA_PORT and says so when that port is taken."""
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        r = run("demo", cwd=tmp_path, env={"APPLIANCE_PASSENGER__PORT": str(free_port()),
                                           "APPLIANCE_ADMIN__PORT": str(free_port()),
                                           "APPLIANCE_CONTENT__MEDIA_PORT": str(port)})
    assert r.returncode == 1
    assert one_line(r).startswith(f"appliance demo: cannot use the media port 127.0.0.1:{port}")
    assert "Portal:" not in r.stdout and "APPLIANCE_CONTENT__MEDIA_PORT=N" in r.stderr


def test_make_run_passes_the_media_port_override_through() -> None:
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    dry = subprocess.run(["make", "-n", "run"], cwd=REPO, capture_output=True, text=True,
                         timeout=60).stdout
    demo = dry[dry.index("APPLIANCE_CONTENT__MEDIA_PORT="):].split("\n")
    line = " ".join(ln.rstrip("\\").strip() for ln in demo[:4])
    line = line.replace(".venv/bin/appliance demo", "env").split("--speed")[0]
    out = subprocess.run(["sh", "-c", line], capture_output=True, text=True, timeout=30,
                         env={**os.environ, "APPLIANCE_CONTENT__MEDIA_PORT": "18282"}).stdout
    assert "APPLIANCE_CONTENT__MEDIA_PORT=18282" in out.splitlines()
    out = subprocess.run(["sh", "-c", line], capture_output=True, text=True, timeout=30,
                         env={k: v for k, v in os.environ.items()
                              if k != "APPLIANCE_CONTENT__MEDIA_PORT"}).stdout
    assert "APPLIANCE_CONTENT__MEDIA_PORT=8082" in out.splitlines()


# --- what the push retries -------------------------------------------------------------------

@pytest.mark.parametrize(("code", "retried", "says"), [
    (408, True, None), (429, True, None), (502, True, None), (503, True, None), (504, True, None),
    (409, True, None),  # a pause (FLIGHT) or a busy upload: the push waits, then resumes
    (401, False, "did not accept the token"), (403, False, "maintenance token"),
    (404, False, "not the passenger port"), (422, False, "bad signature"),
    (507, False, "short of disk space"), (500, False, "HTTP 500"), (400, False, "HTTP 400"),
])
def test_only_answers_that_retrying_fixes_are_retried(code: int, retried: bool,
                                                      says: str | None) -> None:
    import httpx

    from appliance.intake.hangar import _RETRY_STATUS, answer_error

    r = httpx.Response(code, json={"detail": "bad signature" if code == 422 else "x"})
    err = answer_error(r, "http://aircraft:8081", "/uploads")
    assert (err is None) == retried
    assert (code in _RETRY_STATUS or code == 409) == retried
    if says is not None:
        assert err is not None and says in str(err) and "\n" not in str(err)
        assert err.refused == (code == 422)

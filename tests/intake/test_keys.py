"""Issue 14: key rotation (as TUF rotates root), through the real intake process on loopback.

The intake runs as its own process (:mod:`tests.intake.intake_proc`: the daemon's wiring and
router) with the initial keys pinned in its config: content and software by key 0, the ``keys``
role by keys 0, 1, 2 with threshold 2. A new key set (content and software by N0; keys by N1, N2,
threshold 2) is built with ``appliance hangar keyset`` and signed with ``hangar sign``:

- signed by one old keys-role key (plus the new ones): refused, below the old threshold;
- signed by the old threshold but not the new one: refused (the new keys must prove they are held);
- signed by both thresholds: active; a content bundle signed only by the retired key 0 is then
  refused as *retired key*, one signed by N0 accepted;
- after a restart of the process the rotated set is still in force; another key set of the same
  version (a replay) is refused, and once key set v2 is in force a v1 (a rollback) too.

The threshold rule itself is a property (hypothesis) of :func:`appliance.intake.bundle.verify`.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat
from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.errors import BundleRefused
from appliance.intake.bundle import METADATA, Trust, keyid, load_envelope, sign, verify
from appliance.intake.hangar import PushError, main, push
from appliance.intake.hangar_keys import build_keyset_bundle
from appliance.intake.keyset import read_trust

from .helpers import KEYS, make_bundle, pub_hex
from .test_powercut import Proc

TOKEN = "intake-keys-token-0123456789abcdef"
NEW = [Ed25519PrivateKey.from_private_bytes(bytes([0x50 + i]) * 32) for i in range(3)]
CONFIG_ROLES = {"content": {"keys": [pub_hex(KEYS[0])], "threshold": 1},
                "software": {"keys": [pub_hex(KEYS[0])], "threshold": 1},
                "keys": {"keys": [pub_hex(k) for k in KEYS[:3]], "threshold": 2}}


def write_key(path: Path, key: Ed25519PrivateKey) -> Path:
    path.write_bytes(key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()))
    Path(f"{path}.pub").write_text(pub_hex(key) + "\n")
    return path


def keyset_cli(tmp: Path, version: int, signers: list[Ed25519PrivateKey], tag: str) -> Path:
    """``hangar keyset`` (keys from .pub files and hex) then ``hangar sign``: the operator's path."""
    keydir = tmp / "keys"
    keydir.mkdir(exist_ok=True)
    files = {i: write_key(keydir / f"new{i}.pem", k) for i, k in enumerate(NEW)}
    out = tmp / f"keys-v{version}{tag}.bundle"
    assert main(["keyset", "--version", str(version), "--content", f"{files[0]}.pub",
                 "--software", pub_hex(NEW[0]), "--keys", f"{files[1]}.pub", f"{files[2]}.pub",
                 "--keys-threshold", "2", "-o", str(out)]) == 0
    signer_files = [write_key(keydir / f"signer-{keyid(k.public_key())[:8]}.pem", k) for k in signers]
    assert main(["sign", str(out), *[x for f in signer_files for x in ("--key", str(f))]]) == 0
    return out


def refused(bundle: Path, url: str, match: str) -> str:
    with pytest.raises(PushError) as e:
        push(bundle, url, TOKEN, retry_s=0.05, give_up_s=30)
    assert e.value.refused, str(e.value)
    assert match in str(e.value), str(e.value)
    return str(e.value)


def probe(url: str) -> dict[str, Any]:
    body: dict[str, Any] = httpx.get(f"{url}/probe", timeout=30).json()
    return body


@pytest.mark.e2e
@pytest.mark.timeout(120)
def test_rotation_through_the_real_intake_survives_restart(tmp_path: Path) -> None:
    cfg = tmp_path / "intake.json"
    data = tmp_path / "data"
    data.mkdir()
    cfg.write_text(json.dumps({"data": str(data), "token": TOKEN, "chunk_bytes": 65536,
                               "roles": CONFIG_ROLES}))
    proc = Proc(cfg)
    try:
        proc.wait_ready()
        url = proc.url
        # Below the old threshold: one keys-role key in force (plus the new ones) is not enough.
        why = refused(keyset_cli(tmp_path, 1, [KEYS[0], NEW[1], NEW[2]], "a"), url, "below threshold")
        assert "1 valid signature" in why and "need 2" in why
        # The old threshold, but the new keys role did not sign: refused too.
        refused(keyset_cli(tmp_path, 1, [KEYS[0], KEYS[1]], "b"), url,
                "below threshold of the new key set")
        assert "keys" not in probe(url)["installed"]
        # Both thresholds: the new key set is active.
        res = push(keyset_cli(tmp_path, 1, [KEYS[0], KEYS[1], NEW[1], NEW[2]], "c"), url, TOKEN,
                   retry_s=0.05, give_up_s=30)
        assert res.status["state"] == "active", res.status
        row = probe(url)["installed"]["keys"]
        assert row["version"] == 1
        assert row["detail"]["roles"]["content"] == {"keys": [pub_hex(NEW[0])], "threshold": 1}
        assert set(row["detail"]["retired"]) == {keyid(k.public_key()) for k in KEYS[:3]}
        # A bundle signed only by a retired key is refused, with that reason.
        why = refused(make_bundle(tmp_path, 1, {"guide": "old key"}, [KEYS[0]], tag="old"), url,
                      "retired key")
        assert keyid(KEYS[0].public_key())[:16] in why and "key set v1" in why
        assert push(make_bundle(tmp_path, 1, {"guide": "new key"}, [NEW[0]], tag="new"), url,
                    TOKEN, retry_s=0.05, give_up_s=30).status["state"] == "active"

        # Restart: the rotated set is read back from the journal database.
        proc.proc.send_signal(signal.SIGTERM)
        proc.proc.wait(30)
        proc = Proc(cfg)
        proc.wait_ready()
        url = proc.url
        assert probe(url)["installed"]["keys"]["version"] == 1
        refused(make_bundle(tmp_path, 2, {"guide": "old key again"}, [KEYS[0]], tag="old"), url,
                "retired key")
        # Another key set of version 1 (validly signed by the keys now in force): a replay.
        refused(keyset_cli(tmp_path, 1, [NEW[1], NEW[2]], "d"), url, "replay")
        # Key set v2, then v1 again (validly signed): a rollback, refused.
        assert push(keyset_cli(tmp_path, 2, [NEW[1], NEW[2]], "e"), url, TOKEN, retry_s=0.05,
                    give_up_s=30).status["state"] == "active"
        refused(keyset_cli(tmp_path, 1, [NEW[1], NEW[2]], "f"), url,
                "rollback: version 1 is not above the installed keys version 2")
        assert push(make_bundle(tmp_path, 2, {"guide": "new key v2"}, [NEW[0]], tag="new"), url,
                    TOKEN, retry_s=0.05, give_up_s=30).status["state"] == "active"
        installed = probe(url)["installed"]
        assert installed["content"]["version"] == 2 and installed["keys"]["version"] == 2
    finally:
        proc.kill()
    # Each refusal and the rotation are journaled (and queued for the ground), with the reasons.
    with sqlite3.connect(f"file:{data / 'journal.db'}?mode=ro", uri=True) as db:
        rows = [json.loads(d) for (d,) in db.execute(
            "SELECT data FROM journal WHERE kind = 'intake' ORDER BY id")]
        queued = db.execute("SELECT count(*) FROM outbox WHERE stream = 'intake'").fetchone()[0]
    reasons = [r["reason"] for r in rows if r["action"] == "refused"]
    assert len(reasons) == 6 and sum("retired key" in r for r in reasons) == 2, reasons
    assert [r["kind"] for r in rows if r["action"] == "activated"] == ["keys", "content", "keys",
                                                                       "content"]
    assert queued >= len(rows)
    # A process apart from the service (the privileged updater) reads the same trust in force.
    configured = Trust.from_hex({k: (r["keys"], r["threshold"]) for k, r in CONFIG_ROLES.items()})
    t = read_trust(data / "journal.db", configured)
    assert t.version == 2 and keyid(KEYS[0].public_key()) in t.retired
    assert set(t.roles["content"][0]) == {keyid(NEW[0].public_key())}
    assert read_trust(tmp_path / "none.db", configured) is configured


def test_rotation_to_an_older_version_is_refused_after_a_newer_one(tmp_path: Path) -> None:
    """A rollback: key set v1 offered (validly signed) once v2 is in force."""
    t = Trust.from_hex({"keys": ([pub_hex(k) for k in NEW[1:]], 2)}, version=2)
    roles = {"content": ([pub_hex(NEW[0])], 1), "software": ([pub_hex(NEW[0])], 1),
             "keys": ([pub_hex(k) for k in NEW[1:]], 2)}
    env = build_keyset_bundle(1, roles, tmp_path / "k.bundle")
    for k in NEW[1:]:
        env = sign(env, k)
    with pytest.raises(BundleRefused, match="rollback: version 1 is not above the installed keys "
                                            "version 2"):
        verify(env, t, 2, None, "local clock")


def test_keyset_cli_refuses_an_unsatisfiable_threshold(tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["keyset", "--version", "1", "--content", pub_hex(NEW[0]), "--software",
                 pub_hex(NEW[0]), "--keys", pub_hex(NEW[1]), "--keys-threshold", "2",
                 "-o", str(tmp_path / "k.bundle")])
    out = capsys.readouterr().out
    assert code == 2 and "threshold 2 is above the 1 key(s)" in out, out
    code = main(["keyset", "--version", "1", "--content", str(tmp_path / "missing.pub"),
                 "--software", pub_hex(NEW[0]), "--keys", pub_hex(NEW[1]), "-o",
                 str(tmp_path / "k.bundle")])
    out = capsys.readouterr().out
    assert code == 2 and "missing.pub: neither 64 hex digits nor a readable .pub file" in out, out


# --- the threshold rule, as a property ------------------------------------------------------
POOL = [Ed25519PrivateKey.from_private_bytes(bytes([0x80 + i]) * 32) for i in range(6)]
ENV_CACHE: dict[tuple[Any, ...], Any] = {}


def rotation_env(tmp: Path, new_keys: tuple[int, ...], new_t: int) -> Any:
    key = (new_keys, new_t)
    if key not in ENV_CACHE:
        hexes = [pub_hex(POOL[i]) for i in new_keys]
        roles = {"content": (hexes, 1), "software": (hexes, 1), "keys": (hexes, new_t)}
        out = tmp / f"k-{'-'.join(map(str, new_keys))}-{new_t}.bundle"
        ENV_CACHE[key] = build_keyset_bundle(5, roles, out, issued=time.time())
    return ENV_CACHE[key]


@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_rotation_needs_the_old_and_the_new_threshold(tmp_path_factory: pytest.TempPathFactory,
                                                      data: st.DataObject) -> None:
    idx = list(range(len(POOL)))
    old = data.draw(st.lists(st.sampled_from(idx), min_size=1, max_size=4, unique=True), "old")
    old_t = data.draw(st.integers(1, len(old)), "old_t")
    new = tuple(sorted(data.draw(st.lists(st.sampled_from(idx), min_size=1, max_size=4,
                                          unique=True), "new")))
    new_t = data.draw(st.integers(1, len(new)), "new_t")
    signers = data.draw(st.lists(st.sampled_from(sorted(set(old) | set(new))), unique=True),
                        "signers")
    dup = data.draw(st.booleans(), "a signature repeated")
    tmp = tmp_path_factory.getbasetemp() / "prop"
    tmp.mkdir(exist_ok=True)
    env = rotation_env(tmp, new, new_t)
    for i in signers:
        env = sign(env, POOL[i])
    if dup and env.signatures:
        env = type(env)(signed=env.signed, signatures=[*env.signatures, env.signatures[0]])
    trust = Trust.from_hex({"keys": ([pub_hex(POOL[i]) for i in old], old_t)})
    ok_old = len(set(signers) & set(old)) >= old_t
    ok_new = len(set(signers) & set(new)) >= new_t
    try:
        v = verify(env, trust, 4, None, "local clock")
    except BundleRefused as e:
        assert not (ok_old and ok_new), f"refused although both thresholds are met: {e}"
        assert ("below threshold of the new key set" in str(e)) == (ok_old and not ok_new), str(e)
        return
    assert ok_old and ok_new
    assert set(v.keyids) == {keyid(POOL[i].public_key()) for i in signers}


def test_retired_key_refusal_names_the_key_set(tmp_path: Path) -> None:
    b = make_bundle(tmp_path, 3, {"guide": "x"}, [KEYS[0]])
    env = load_envelope(b / METADATA)
    t = Trust.from_hex({"content": ([pub_hex(NEW[0])], 1)}, 4, [keyid(KEYS[0].public_key())])
    with pytest.raises(BundleRefused, match=r"retired key: .*key set v4 is in force"):
        verify(env, t, 0, None, "local clock")
    t = Trust.from_hex({"content": ([pub_hex(NEW[0])], 1)}, 4)
    with pytest.raises(BundleRefused, match="unknown key"):
        verify(env, t, 0, None, "local clock")
    assert os.path.isdir(b)

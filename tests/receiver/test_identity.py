"""Aircraft identity (issue 17, acceptance 3): Ed25519 keys registered on the ground.

Before: any holder of a static token from the receiver's TOML was the aircraft; there was no way
to register, revoke or rotate an aircraft without editing and restarting every receiver. Now a
batch signed by an unknown or revoked aircraft is refused with a clear status and message, and a
rotated key works — through the real app (SQLite and a real PostgreSQL), signed by the
aircraft's own signing code (``appliance.sync.identity``), and from the real uplink.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from appliance.sync.identity import AircraftKey
from appliance.sync.identity import signed_message as aircraft_message
from ground_receiver.app import create_app
from ground_receiver.cli import main as receiver_cli
from ground_receiver.db import init_db, make_engine
from ground_receiver.identity import KeyRing
from ground_receiver.identity import signed_message as ground_message
from ground_receiver.settings import ReceiverSettings
from ground_receiver.store import BatchStore

from .conftest import batch_body

AC = "F-IDNT"
LEGACY, LEGACY_TOKEN = "F-LEGACY", "legacy-token-0123456789ab"


@pytest.fixture
def ground(db_url: str) -> Iterator[tuple[TestClient, KeyRing]]:
    engine = make_engine(db_url)
    init_db(engine)
    settings = ReceiverSettings(database_url=db_url, aircraft={LEGACY: LEGACY_TOKEN})
    with TestClient(create_app(settings, BatchStore(engine, reorder_wait_s=0.1))) as client:
        yield client, KeyRing(engine)
    engine.dispose()


def new_key(tmp: Path, name: str, aircraft: str = AC) -> AircraftKey:
    AircraftKey.generate(tmp / name)
    return AircraftKey.load(aircraft, tmp / name)


def send(client: TestClient, key: AircraftKey, seqs: list[int], *, aircraft: str = AC,
         tamper: bool = False) -> tuple[int, dict[str, object]]:
    _, body = batch_body(aircraft, {"orders": seqs})
    h = key.headers("POST", "/v1/batches", body)
    if tamper:
        _, body = batch_body(aircraft, {"orders": [*seqs, seqs[-1] + 1]})
    r = client.post("/v1/batches", content=body, headers={
        **h, "Content-Type": "application/json", "Content-Encoding": "zstd"})
    return r.status_code, r.json()


def test_both_sides_sign_the_same_message() -> None:
    args = ("POST", "/v1/batches", AC, "0123456789abcdef", "1.500", b"body")
    assert aircraft_message(*args) == ground_message(*args)


def test_registered_key_is_taken_unknown_and_revoked_are_refused(
        ground: tuple[TestClient, KeyRing], tmp_path: Path) -> None:
    client, ring = ground
    key = new_key(tmp_path, "a.pem")
    status, ans = send(client, key, [1, 2])
    assert status == 401 and ans["error"] == "unknown_aircraft", ans
    assert AC in str(ans["detail"]) and key.key_id in str(ans["detail"])

    assert ring.register(AC, key.public_b64) == key.key_id
    status, ans = send(client, key, [1, 2])
    assert status == 200 and ans["applied"] == 2, ans
    r = client.get("/v1/watermarks", headers=key.headers("GET", "/v1/watermarks", b""))
    assert r.status_code == 200 and r.json()["watermarks"] == {"orders": 2}

    status, ans = send(client, key, [3], tamper=True)  # the body is not the one signed
    assert status == 401 and ans["error"] == "unauthorized" and "does not verify" in str(ans)

    impostor = new_key(tmp_path, "b.pem")  # another key claiming the same aircraft
    status, ans = send(client, impostor, [3])
    assert status == 401 and ans["error"] == "unknown_aircraft"

    assert ring.revoke(AC) == 1
    status, ans = send(client, key, [3])
    assert status == 403 and ans["error"] == "key_revoked", ans
    assert "revoked" in str(ans["detail"])
    with pytest.raises(ValueError, match="revoked"):
        ring.register(AC, key.public_b64)  # a revoked key is never taken back
    r = client.get("/v1/watermarks", headers=key.headers("GET", "/v1/watermarks", b""))
    assert r.status_code == 403


def test_rotated_key_works_and_the_old_one_ends_with_the_grace(
        ground: tuple[TestClient, KeyRing], tmp_path: Path) -> None:
    client, ring = ground
    old, new = new_key(tmp_path, "old.pem"), new_key(tmp_path, "new.pem")
    ring.register(AC, old.public_b64)
    assert send(client, old, [1])[0] == 200
    ring.rotate(AC, new.public_b64, grace_s=3600)
    assert send(client, old, [2])[0] == 200  # inside the grace: both keys are taken
    assert send(client, new, [3])[0] == 200
    ring.rotate(AC, new.public_b64, grace_s=0)  # end the grace now
    status, ans = send(client, old, [4])
    assert status == 403 and ans["error"] == "key_revoked" and "expired" in str(ans["detail"])
    status, ans = send(client, new, [4])
    assert status == 200 and ans["watermarks"] == {"orders": 4}
    assert {k.key_id: k.state for k in ring.keys(AC)} == {old.key_id: "expired",
                                                          new.key_id: "active"}


def test_legacy_token_still_works_and_a_key_cannot_sign_for_another_aircraft(
        ground: tuple[TestClient, KeyRing], tmp_path: Path) -> None:
    client, ring = ground
    _, body = batch_body(LEGACY, {"orders": [1]})
    r = client.post("/v1/batches", content=body, headers={
        "Authorization": f"Bearer {LEGACY_TOKEN}", "Content-Type": "application/json",
        "Content-Encoding": "zstd"})
    assert r.status_code == 200, r.json()
    key = new_key(tmp_path, "a.pem")
    ring.register(AC, key.public_b64)
    with pytest.raises(ValueError, match="registered for"):
        ring.register("F-OTHER", key.public_b64)
    status, ans = send(client, key, [1], aircraft=LEGACY)  # body names another aircraft
    assert status == 403 and ans["error"] == "aircraft_mismatch"


def test_cli_registers_lists_rotates_and_revokes(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{tmp_path}/ground.db"
    a, b = new_key(tmp_path, "a.pem"), new_key(tmp_path, "b.pem")
    pem = tmp_path / "a.pub"
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    pem.write_bytes(Ed25519PublicKey.from_public_bytes(a.public_raw).public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    assert receiver_cli(["aircraft", "--database-url", url, "register", AC, str(pem)]) == 0
    assert receiver_cli(["aircraft", "--database-url", url, "rotate", AC, b.public_b64,
                         "--grace-s", "0"]) == 0
    capsys.readouterr()
    assert receiver_cli(["aircraft", "--database-url", url, "list"]) == 0
    out = capsys.readouterr().out
    assert f"{AC}\t{a.key_id}\texpired" in out and f"{AC}\t{b.key_id}\tactive" in out
    assert receiver_cli(["aircraft", "--database-url", url, "revoke", AC,
                         "--key-id", b.key_id]) == 0
    assert receiver_cli(["aircraft", "--database-url", url, "revoke", AC]) == 0  # the expired a
    assert receiver_cli(["aircraft", "--database-url", url, "revoke", AC]) == 1  # none left
    assert receiver_cli(["aircraft", "--database-url", url, "register", AC, "not a key"]) == 1
    assert "neither PEM nor base64" in capsys.readouterr().err


def test_uplink_signs_its_batches(tmp_path: Path) -> None:
    """The real uplink with ``signing_key_file`` drains into a receiver that has no token."""
    from appliance.sync import SyncService
    from tests.sync.helpers import AIRCRAFT, Journal, chain, outbox_count, running_receiver, settings

    async def run() -> None:
        j = Journal(tmp_path / "journal.db")
        j.fill("orders", 300)
        AircraftKey.generate(tmp_path / "sync.pem")
        key = AircraftKey.load(AIRCRAFT, tmp_path / "sync.pem")
        async with running_receiver(f"sqlite:///{tmp_path}/ground.db") as rx:
            KeyRing(rx.engine).register(AIRCRAFT, key.public_b64)
            s = settings(tmp_path, rx.url, token=None, signing_key_file=str(tmp_path / "sync.pem"))
            svc = SyncService(s, j.writer, j.reader, chain())
            await svc.start()
            try:
                for _ in range(400):
                    if outbox_count(j.reader) == 0:
                        break
                    await asyncio.sleep(0.05)
            finally:
                await svc.stop()
            assert len(rx.rows()) == 300
        j.close()

    asyncio.run(run())

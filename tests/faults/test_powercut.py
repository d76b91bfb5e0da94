"""Power cuts against the real service: what it acknowledged is there after the cut.

The driver (:mod:`tests.faults.driver`) runs ``appliance run`` with its data dir on PowerFS,
POSTs orders from 8 concurrent clients, cuts the power at a random moment (the filesystem
first, then the service), restarts the service, waits for ``READY=1`` and checks every
acknowledged order and its outbox row. (a) With ``journal_synchronous=FULL``: 100 cuts, nothing
lost (about 2.5 min on the 2-core CI machine). (b) With ``NORMAL`` the same harness must see
acknowledged orders vanish, or it could not tell a broken journal from a good one.

Skipped when /dev/fuse, fusermount3 or pyfuse3/trio are unavailable (install steps in
tests/faults/powerfs/README.md). Longer runs: ``make test-powercut N=1000``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from .driver import DriverConfig, Report, fuse_unavailable, read_db, run_cuts

_SKIP_REASON = fuse_unavailable()
pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(_SKIP_REASON is not None, reason=_SKIP_REASON or ""),
]


def _run(tmp_path: Path, config: DriverConfig) -> Report:
    """Run the driver in ``tmp_path`` and print its report (visible with ``pytest -s``)."""
    report = run_cuts(config, tmp_path / "powercut", log=print)  # problems show in the output
    print(f"\n{report.summary()}")
    return report


@pytest.mark.timeout(480)
def test_full_keeps_every_acknowledged_order_across_100_cuts(tmp_path: Path) -> None:
    """THE promise: 100 cuts with synchronous=FULL, 0 lost, sound database, READY every time."""
    report = _run(tmp_path, DriverConfig(cuts=100, synchronous="FULL", seed=20240706))
    assert report.aborted is None, report.aborted
    assert len(report.cuts) == 100
    assert report.acknowledged >= 20 * len(report.cuts), "too little load between cuts to prove anything"
    assert not report.lost, f"{len(report.lost)} acknowledged orders lost, e.g. {report.lost[:10]}"
    assert report.integrity_failures == 0
    assert report.not_ready == 0, "the service did not send READY=1 after every cut"
    assert report.bite_not_green == 0
    assert report.outbox_missing == 0 and report.orphan_outbox == 0
    assert report.resubmit_failures == 0, "a re-POSTed acknowledged key was not answered 200"
    assert report.powerfs_internal_errors == 0
    assert report.ok(), report.summary()


@pytest.mark.timeout(240)
def test_normal_loses_acknowledged_orders(tmp_path: Path) -> None:
    """The harness can fail: synchronous=NORMAL acknowledges orders that a cut then loses."""
    report = _run(
        tmp_path,
        DriverConfig(cuts=30, synchronous="NORMAL", seed=20240707, boot_cut_prob=0.0, stop_on_loss=True),
    )
    assert report.aborted is None, report.aborted
    assert report.lost, f"no acknowledged order lost in {len(report.cuts)} cuts with synchronous=NORMAL"
    assert report.integrity_failures == 0, "NORMAL in WAL mode loses commits but never corrupts"
    assert not report.ok()


def test_read_db_reports_a_missing_journal(tmp_path: Path) -> None:
    """A journal that vanished reads as empty, with a reason instead of ``ok``."""
    view = read_db(tmp_path / "journal.db")
    assert view.integrity == "journal database missing" and not view.orders and not view.outbox

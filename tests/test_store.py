"""The SQLite run store: round trips, event order, several writer processes at once."""

import multiprocessing as mp
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kd.store import RUN_ID, Store, StoreError


def test_run_round_trip(runs_dir):
    store = Store()
    run_id = store.create_run({"dataset": "digits"})
    assert RUN_ID.match(run_id) and (runs_dir / "runs.db").exists()
    store.update(run_id, status="done", results={"models": {"teacher": {"accuracy": 0.9}}, "summary": {"gain": None}})
    run = store.get(run_id)
    assert run.status == "done" and run.config == {"dataset": "digits"}
    assert run.models["teacher"]["accuracy"] == 0.9 and run.summary == {"gain": None}
    assert [r.id for r in store.runs()] == [run_id]


def test_events_are_ordered_and_polled_by_sequence():
    store = Store()
    run_id = store.create_run({})
    store.append_events(run_id, [{"kind": "step", "i": i} for i in range(5)])
    store.append_events(run_id, [{"kind": "step", "i": 5}])
    events = store.events(run_id)
    assert [seq for seq, _ in events] == [1, 2, 3, 4, 5, 6] and events[5][1] == {"kind": "step", "i": 5}
    assert [e["i"] for _, e in store.events(run_id, since=4)] == [4, 5]
    assert store.get(run_id).heartbeat is not None


def test_unknown_or_malformed_run_ids_are_not_runs():
    store = Store()
    assert store.get("20990101-000000-abcdef") is None
    assert store.get("../../etc/passwd") is None
    with pytest.raises(ValueError):
        store.run_dir("../x")


def test_stop_request_and_delete(runs_dir):
    store = Store()
    run_id = store.create_run({})
    assert not store.stop_requested(run_id)
    store.request_stop(run_id)
    assert store.stop_requested(run_id)
    store.save_weights(run_id, "teacher", {}, {"a": 1}, "mlp-128")
    assert (runs_dir / run_id / "teacher.safetensors").exists()
    store.delete(run_id)
    assert store.get(run_id) is None and not (runs_dir / run_id).exists() and store.events(run_id) == []


def _writer(root, run_id, n):
    store = Store(root)
    for i in range(n):
        store.append_events(run_id, [{"kind": "step", "i": i}])
        store.update(run_id, status=f"running-{i}")


def test_several_processes_write_at_once(runs_dir):
    store = Store()
    ids = [store.create_run({"n": k}) for k in range(4)]
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(str(runs_dir), run_id, 100)) for run_id in ids]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert all(p.exitcode == 0 for p in procs)
    for run_id in ids:  # each run has exactly its own 100 events, in order
        assert [e["i"] for _, e in store.events(run_id)] == list(range(100))
        assert store.get(run_id).status == "running-99"


def _hammer(root, run_id):
    store = Store(root)
    while True:
        store.append_events(run_id, [{"kind": "step"}])
        store.stop_requested(run_id)


def test_a_frozen_writer_never_locks_readers_out(runs_dir):
    """A worker suspended at any instant (laptop lid, SIGSTOP) leaves the store readable: the
    dashboard must still see the run, or it can never say the run is interrupted. Each read is
    a fresh connection, as each dashboard call is, with no Store of its own holding the file.
    Before the held connection about 4 % of instants locked readers out (a frozen last close
    folding the WAL back). A rare lock-out remains under heavy load (2 of 150 instants once,
    while the whole suite and a benchmark ran; none in 1,200 instants with both cores busy
    otherwise): SQLite can leave readers waiting on a writer frozen inside its own commit. The
    bound allows that, not the old 4 %."""
    run_id = Store().create_run({}, status="running")
    proc = mp.get_context("spawn").Process(target=_hammer, args=(str(runs_dir), run_id), daemon=True)
    proc.start()
    try:
        while not Store(runs_dir).events(run_id):
            time.sleep(0.05)
        rng, locked = random.Random(0), 0
        for _ in range(300):
            time.sleep(rng.uniform(0.002, 0.02))
            os.kill(proc.pid, signal.SIGSTOP)
            try:
                db = sqlite3.connect(runs_dir / "runs.db", timeout=0.5)
                try:
                    db.execute("PRAGMA journal_mode=WAL")
                    assert db.execute("SELECT status FROM runs").fetchone() == ("running",)
                finally:
                    db.close()
            except sqlite3.OperationalError:
                locked += 1
            finally:
                os.kill(proc.pid, signal.SIGCONT)
        assert locked <= 6, f"{locked} of 300 reads found the store locked by a frozen writer"
    finally:
        proc.kill()
        proc.join(10)


def test_a_write_blocked_by_another_process_is_a_clear_error_and_reads_go_on(runs_dir):
    store = Store()
    run_id = store.create_run({}, status="running")
    store.busy_timeout_s = 0.2
    other = sqlite3.connect(runs_dir / "runs.db", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # a writer that never finishes (e.g. suspended mid-write)
    try:
        with pytest.raises(StoreError, match="stayed busy for 0.2 s .*nothing was changed; try again"):
            store.request_stop(run_id)
        assert store.get(run_id).status == "running" and not store.stop_requested(run_id)
    finally:
        other.execute("ROLLBACK")
        other.close()
    store.request_stop(run_id)
    assert store.stop_requested(run_id)


def test_unusable_runs_folder_is_a_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(StoreError, match="runs folder .*file.*cannot be used.*KD_RUNS_DIR"):
        Store(blocker / "runs")


def _damage(runs_dir, run_events: int = 3971, offset_fraction: float = 0.5) -> None:
    """A store with many events, folded into runs.db, then 4 KB of garbage written in its middle."""
    store = Store(runs_dir)
    run_id = store.create_run({"dataset": "digits"}, status="done")
    store.append_events(run_id, [{"kind": "step", "step": i, "loss": 0.5} for i in range(run_events)])
    db = sqlite3.connect(runs_dir / "runs.db")
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    del store
    path = runs_dir / "runs.db"
    with open(path, "r+b") as f:
        f.seek(int(path.stat().st_size * offset_fraction) // 4096 * 4096)
        f.write(random.Random(0).randbytes(4096))


def test_a_damaged_store_is_refused_on_open_with_what_to_do(runs_dir):
    """Before, 4 KB of garbage in the middle of runs.db was read silently (1,352 of 3,971 events)."""
    _damage(runs_dir)
    with pytest.raises(StoreError, match=r"run store .*runs\.db is damaged .*move the file aside: mv "):
        Store(runs_dir)
    p = subprocess.run(
        [sys.executable, "-m", "kd", "runs"],
        cwd=Path(__file__).resolve().parents[1],
        capture_output=True,
        text=True,
        env={**os.environ, "KD_RUNS_DIR": str(runs_dir)},
        timeout=60,
    )
    assert p.returncode == 2 and p.stderr.count("\n") == 1 and "is damaged" in p.stderr, p.stderr


def test_a_file_that_is_no_database_is_a_clear_error(runs_dir):
    runs_dir.mkdir(parents=True)
    (runs_dir / "runs.db").write_bytes(b"this is not a database, " * 200)
    with pytest.raises(StoreError, match="is damaged"):
        Store(runs_dir)


def test_damage_after_opening_is_a_clear_error_on_read(runs_dir):
    store = Store(runs_dir)
    run_id = store.create_run({}, status="done")
    (runs_dir / "runs.db-wal").unlink(missing_ok=True)
    store._held.close()
    (runs_dir / "runs.db").write_bytes(b"garbage " * 1000)
    with pytest.raises(StoreError, match="is damaged"):
        store.get(run_id)

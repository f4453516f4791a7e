"""Runs persist in SQLite (WAL) under ./runs (or $KD_RUNS_DIR): config, status, every event,
final metrics. Weights sit beside it as safetensors, with the config in their metadata.

Every call opens its own short-lived connection, so several processes (workers, the CLI, the
dashboard's threads) read and write at once; WAL lets readers run while one writer commits.

Each Store also holds one idle connection for its lifetime. SQLite's last connection to close
takes an exclusive lock to fold the WAL back into the database; a process frozen inside that
close (a suspended laptop, SIGSTOP) would lock every reader out until it woke. With a held
connection, a per-call close is never the last, so a frozen worker never blocks the dashboard.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kd.errors import KDError
from kd.events import STAGES
from kd.lease import HOST, LeaseLost, keeps_place, owner_alive, process_start
from kd.limits import env_limit

RUN_ID = re.compile(r"^\d{8}-\d{6}-[0-9a-f]{6}$")  # e.g. 20261129-164512-a3f9c2; never a path
SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    created REAL NOT NULL,          -- unix seconds
    updated REAL NOT NULL,
    status TEXT NOT NULL,           -- queued | running | done | stopped | diverged | failed | interrupted
    config TEXT NOT NULL,           -- RunConfig JSON
    results TEXT,                   -- {"models": {...}, "summary": {...}} JSON, once known
    message TEXT,                   -- why it failed or stopped, one line
    pid INTEGER,                    -- process training it
    heartbeat REAL,                 -- last sign of life of that process, unix seconds
    stop_requested INTEGER NOT NULL DEFAULT 0,
    host TEXT,                      -- machine of that process (a pid means nothing elsewhere)
    resumed INTEGER NOT NULL DEFAULT 0, -- times resumed; a reader's cached events are stale when it changes
    token TEXT,                     -- the owner's lease (kd/lease.py): every write it makes carries it
    pid_start TEXT,                 -- start time of process pid (a reused pid is another process)
    queued_at REAL,                 -- when it last joined the queue: runs start in this order
    name TEXT                       -- the name a person gave it; NULL: named by what sets it apart
);
CREATE TABLE IF NOT EXISTS events (
    run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    seq INTEGER NOT NULL,           -- 1, 2, ... per run
    t REAL NOT NULL,                -- unix seconds
    data TEXT NOT NULL,             -- the event as JSON (kd.events.to_dict)
    PRIMARY KEY (run_id, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS sweeps (
    id TEXT PRIMARY KEY,            -- a row of runs: its lease, status, stop request and events are the sweep's
    spec TEXT NOT NULL              -- axes, seeds, max_group as JSON (kd/sweep.py); runs.config is the base
);
CREATE TABLE IF NOT EXISTS sweep_runs (
    sweep_id TEXT NOT NULL,
    cell INTEGER NOT NULL,          -- index into the sweep's grid
    seed INTEGER NOT NULL,
    run_id TEXT NOT NULL,           -- the finished run holding this cell's students for this seed
    PRIMARY KEY (sweep_id, cell, seed)
) WITHOUT ROWID;
"""


COLUMNS = (
    "id",
    "created",
    "updated",
    "status",
    "config",
    "results",
    "message",
    "pid",
    "heartbeat",
    "stop_requested",
    "host",
    "resumed",
    "token",
    "pid_start",
    "queued_at",
    "name",
)
ADDED_COLUMNS = {
    "host": "TEXT",
    "resumed": "INTEGER NOT NULL DEFAULT 0",  # absent from older stores
    "token": "TEXT",
    "pid_start": "TEXT",
    "queued_at": "REAL",
    "name": "TEXT",
}
MIN_FREE_MB = 50  # below this much free disk a run is refused at start ($KD_MIN_FREE_MB)
RESERVE_BYTES = 1 << 20  # kept on disk, given up when the disk fills so a run can record why it ended


class StoreError(KDError):
    """The runs folder cannot be used (not writable, disk full, damaged, not a run store)."""


class DiskFull(StoreError):
    """A write failed for want of space; what was written before stays, and the run can resume."""


@dataclass
class Run:
    id: str
    created: float
    updated: float
    status: str
    config: dict
    results: dict | None
    message: str | None
    pid: int | None
    heartbeat: float | None
    stop_requested: bool
    host: str | None = None
    resumed: int = 0
    token: str | None = None
    pid_start: str | None = None
    queued_at: float | None = None
    name: str | None = None  # given by a person (rename); None: kd.service.names() makes one

    @property
    def models(self) -> dict[str, dict]:
        return (self.results or {}).get("models", {})

    @property
    def summary(self) -> dict:
        return (self.results or {}).get("summary", {})


def default_root() -> Path:
    return Path(os.environ.get("KD_RUNS_DIR") or "runs")


def new_run_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(3)


class Store:
    busy_timeout_s = 60.0  # how long a call waits for another process's write to end

    def __init__(self, root: str | os.PathLike | None = None, check: bool = True):
        self.root = Path(root) if root is not None else default_root()
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            with self._connect() as db:
                if check:
                    self._check(db)
                db.executescript(SCHEMA)
                have = {row[1] for row in db.execute("PRAGMA table_info(runs)")}
                for name, kind in ADDED_COLUMNS.items():
                    if name not in have:
                        db.execute(f"ALTER TABLE runs ADD COLUMN {name} {kind}")
            self._keep_reserve()
            # Held, never queried again; a read makes it open the WAL and keep its shared lock.
            self._held = sqlite3.connect(self.root / "runs.db", timeout=self.busy_timeout_s, check_same_thread=False)
            self._held.execute("SELECT 1 FROM runs LIMIT 1").fetchall()
        except StoreError:
            raise
        except (OSError, sqlite3.Error) as e:
            raise StoreError(
                f"runs folder {self.root.resolve()}: cannot be used ({e}); set KD_RUNS_DIR to a writable folder"
            ) from None

    def _keep_reserve(self) -> None:
        """A file of RESERVE_BYTES in the runs folder, made when there is room for it."""
        path = self.root / ".reserve"
        if path.exists():
            return
        tmp = self.root / f".reserve.{os.getpid()}"
        try:
            tmp.write_bytes(b"\0" * RESERVE_BYTES)
            os.replace(tmp, path)
        except OSError:
            tmp.unlink(missing_ok=True)

    def release_reserve(self) -> None:
        """Free the reserve: room for the store to record that the disk filled (DiskFull)."""
        (self.root / ".reserve").unlink(missing_ok=True)

    def check(self) -> None:
        """StoreError when the database is damaged (see _check)."""
        with self._connect() as db:
            self._check(db)

    def _check(self, db: sqlite3.Connection) -> None:
        """Refuse a damaged database at once (a page or a run would otherwise read part of it
        silently): SQLite's quick_check reads every page and checks its structure."""
        try:
            problems = [row[0] for row in db.execute("PRAGMA quick_check(5)")]
        except sqlite3.DatabaseError as e:
            problems = [str(e)]
        if problems != ["ok"]:
            raise StoreError(self._damaged("; ".join(problems)))

    def _damaged(self, why: str) -> str:
        path = (self.root / "runs.db").resolve()
        return (
            f"The run store {path} is damaged ({why[:200]}), so runs cannot be listed; nothing was "
            f"changed. To start again with an empty store, move the file aside: mv {path} {path}.damaged "
            f"(the next start makes a new one; each run's weights stay in its folder). To try to rescue "
            f"the old records: sqlite3 {path}.damaged .recover"
        )

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.root / "runs.db", timeout=self.busy_timeout_s, isolation_level=None)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable at checkpoints, never corrupt
            db.execute("PRAGMA foreign_keys=ON")
            yield db
        except sqlite3.DatabaseError as e:  # locked/busy stays a sqlite error: _write names it
            text = str(e).lower()
            if any(w in text for w in ("malformed", "not a database", "corrupt", "unsupported file format")):
                raise StoreError(self._damaged(str(e))) from None
            if "disk is full" in text or "disk i/o error" in text:
                raise DiskFull(
                    f"runs folder {self.root.resolve()}: the run store cannot write ({e}); "
                    "free some space, then resume the run"
                ) from None
            raise
        finally:
            db.close()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One transaction; BEGIN IMMEDIATE takes the write lock up front (no upgrade deadlock)."""
        with self._connect() as db:
            try:
                db.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as e:
                if "locked" not in str(e) and "busy" not in str(e):
                    raise
                raise StoreError(
                    f"runs folder {self.root.resolve()}: the run store stayed busy for "
                    f"{self.busy_timeout_s:g} s (another process is writing to it, or is "
                    "suspended in the middle of a write); nothing was changed; try again"
                ) from None
            try:
                yield db
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:  # SQLite rolls back by itself on some errors (a full disk)
                    db.execute("ROLLBACK")
                raise

    def _lease(self, db: sqlite3.Connection, run_id: str, lease: str | None) -> None:
        """Inside a write: refuse it unless `lease` still owns the run (None: an owner-less write)."""
        if lease is None:
            return
        row = db.execute("SELECT token, pid, host FROM runs WHERE id = ?", (run_id,)).fetchone()
        if row is None:
            raise LeaseLost(f"run {run_id} was deleted; this worker stops")
        if row[0] != lease:
            raise LeaseLost(
                f"run {run_id} is owned by another worker now (pid {row[1]} on {row[2]}); "
                "this one stops without writing"
            )

    def check_lease(self, run_id: str, lease: str) -> None:
        """LeaseLost unless `lease` owns the run: asked before a worker writes a file of the run."""
        with self._connect() as db:
            self._lease(db, run_id, lease)

    # -- runs -----------------------------------------------------------------------------
    def check_space(self, needed_bytes: int = 0) -> None:
        """Refuse to start a run the disk cannot hold: a StoreError naming the folder and the figures."""
        min_free = env_limit("KD_MIN_FREE_MB", MIN_FREE_MB, zero_ok=True, error=StoreError) * 1e6
        try:
            free = shutil.disk_usage(self.root).free
        except OSError as e:
            raise StoreError(f"runs folder {self.root.resolve()}: cannot be used ({e})") from None
        if free < needed_bytes + min_free:
            raise StoreError(
                f"runs folder {self.root.resolve()}: the disk is full or nearly "
                f"({free / 1e6:,.0f} MB free; a run needs {needed_bytes / 1e6:,.0f} MB for its "
                f"weights and checkpoints, plus {min_free / 1e6:,.0f} MB to spare); "
                "free some space or set KD_RUNS_DIR to another disk"
            )

    def create_run(
        self,
        config: dict,
        status: str = "queued",
        needed_bytes: int = 0,
        lease: str | None = None,
        inputs: dict[str, str] | None = None,
    ) -> str:
        """A new run with its folder and config.json, or a StoreError and nothing at all.

        The creating process is recorded as its owner until a worker claims it (or, with `lease`,
        holds the lease from the start). `inputs` maps a config field naming a file to the name
        of a copy made in the run's folder, which the stored config then names: a run owns its
        inputs, so resuming it never depends on another run or an upload folder."""
        config = dict(config)
        sources = {k: Path(config[k]) for k in (inputs or {}) if config.get(k)}
        self.check_space(needed_bytes + sum(p.stat().st_size for p in sources.values() if p.is_file()))
        run_id, now = new_run_id(), time.time()
        folder = self.run_dir(run_id)
        try:
            folder.mkdir(parents=True)
            for key, source in sources.items():
                copy = folder / inputs[key]  # type: ignore[index]
                shutil.copyfile(source, copy)
                config[key] = str(copy.resolve())
            _write_atomic(folder / "config.json", json.dumps(config, indent=2, sort_keys=True))
            with self._write() as db:
                pid = os.getpid()
                db.execute(
                    "INSERT INTO runs (id, created, updated, status, config, pid, host, pid_start, heartbeat, "
                    "queued_at, token) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        run_id,
                        now,
                        now,
                        status,
                        json.dumps(config, sort_keys=True),
                        pid,
                        HOST,
                        process_start(pid),
                        now,
                        now,
                        lease,
                    ),
                )
        except (OSError, sqlite3.Error) as e:
            shutil.rmtree(folder, ignore_errors=True)  # no half-made run: no folder without a row
            raise StoreError(
                f"runs folder {self.root.resolve()}: cannot create a run ({e}); "
                "free some space or set KD_RUNS_DIR to a writable folder"
            ) from None
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        return run_id

    def update(self, run_id: str, lease: str | None = None, **fields: Any) -> None:
        """Set columns (status, message, pid, heartbeat, results) of one run; with `lease`, only
        while that lease owns the run (else LeaseLost, and nothing is written)."""
        if "results" in fields:
            fields["results"] = json.dumps(fields["results"], allow_nan=True)
        fields["updated"] = time.time()
        cols = ", ".join(f"{k} = ?" for k in fields)
        with self._write() as db:
            self._lease(db, run_id, lease)
            db.execute(f"UPDATE runs SET {cols} WHERE id = ?", (*fields.values(), run_id))

    def change(self, run_id: str, decide: Callable[[Run], dict]) -> Run:
        """Read one run and write the fields decide(run) returns, in one transaction, so no other
        process changes the run in between; decide raises to refuse. Returns the run as written."""
        with self._write() as db:
            row = db.execute(f"SELECT {', '.join(COLUMNS)} FROM runs WHERE id = ?", (run_id,)).fetchone()
            if row is None:
                raise KDError(f"no such run: {run_id!r} (python -m kd runs lists them)")
            fields = {**decide(_run(row)), "updated": time.time()}
            db.execute(
                f"UPDATE runs SET {', '.join(f'{k} = ?' for k in fields)} WHERE id = ?", (*fields.values(), run_id)
            )
            return _run(db.execute(f"SELECT {', '.join(COLUMNS)} FROM runs WHERE id = ?", (run_id,)).fetchone())

    def take_slot(self, run_id: str, lease: str, limit: int) -> int | None:
        """Mark a queued run running when fewer than `limit` runs with a live owner are running
        and no run queued before it is waiting (queued runs start in turn; which keep their
        place is kd.lease.keeps_place's rule). None when it did; else its place in line."""
        with self._write() as db:
            self._lease(db, run_id, lease)
            active = [
                _run(r)
                for r in db.execute(f"SELECT {', '.join(COLUMNS)} FROM runs WHERE status IN ('queued', 'running')")
            ]
            me = next((r for r in active if r.id == run_id), None)
            if me is None:
                raise KDError(f"run {run_id} is no longer queued")
            if me.status == "running":
                return None
            now = time.time()
            running = [r for r in active if r.status == "running" and r.id != run_id and owner_alive(r, now)]
            ahead = [
                r
                for r in active
                if r.status == "queued"
                and r.id != run_id
                and (r.queued_at or r.created, r.id) < (me.queued_at or me.created, me.id)
                and keeps_place(r, now)
            ]
            if len(running) + len(ahead) >= limit:
                return len(ahead) + 1
            db.execute(
                "UPDATE runs SET status = 'running', updated = ?, heartbeat = ? WHERE id = ?", (now, now, run_id)
            )
            return None

    def get(self, run_id: str) -> Run | None:
        if not isinstance(run_id, str) or not RUN_ID.match(run_id):
            return None
        with self._connect() as db:
            row = db.execute(f"SELECT {', '.join(COLUMNS)} FROM runs WHERE id = ?", (run_id,)).fetchone()
        return _run(row) if row else None

    def runs(self, sweeps: bool = False) -> list[Run]:
        """Every run, newest first; with `sweeps`, the sweeps instead (their rows of runs)."""
        where = "IN" if sweeps else "NOT IN"
        with self._connect() as db:
            return [
                _run(r)
                for r in db.execute(
                    f"SELECT {', '.join(COLUMNS)} FROM runs WHERE id {where} (SELECT id FROM sweeps) "
                    "ORDER BY created DESC, id DESC"
                )
            ]

    # -- sweeps: a run row (lease, status, events) plus its grid and the runs of its cells --------
    def mark_sweep(self, run_id: str, spec: dict) -> None:
        with self._write() as db:
            db.execute("INSERT INTO sweeps (id, spec) VALUES (?, ?)", (run_id, json.dumps(spec)))  # axes in order

    def sweep_spec(self, run_id: str) -> dict | None:
        with self._connect() as db:
            row = db.execute("SELECT spec FROM sweeps WHERE id = ?", (run_id,)).fetchone()
        return json.loads(row[0]) if row else None

    def add_sweep_run(self, sweep_id: str, cell: int, seed: int, run_id: str, lease: str) -> None:
        with self._write() as db:
            self._lease(db, sweep_id, lease)
            db.execute(
                "INSERT OR REPLACE INTO sweep_runs (sweep_id, cell, seed, run_id) VALUES (?, ?, ?, ?)",
                (sweep_id, cell, seed, run_id),
            )

    def sweep_of_run(self, run_id: str) -> tuple[str, int, int] | None:
        """(sweep id, cell, seed) of a run that holds a sweep's cell; None for any other run."""
        with self._connect() as db:
            row = db.execute("SELECT sweep_id, cell, seed FROM sweep_runs WHERE run_id = ?", (run_id,)).fetchone()
        return tuple(row) if row else None

    def sweep_runs(self, sweep_id: str) -> dict[tuple[int, int], str]:
        """(cell, seed) -> run id, for the cells a sweep has finished."""
        with self._connect() as db:
            rows = db.execute("SELECT cell, seed, run_id FROM sweep_runs WHERE sweep_id = ?", (sweep_id,)).fetchall()
        return {(c, s): r for c, s, r in rows}

    def delete(self, run_id: str) -> None:
        if self.get(run_id) is None:
            return
        with self._write() as db:
            db.execute("DELETE FROM events WHERE run_id = ?", (run_id,))
            db.execute("DELETE FROM runs WHERE id = ?", (run_id,))
            db.execute("DELETE FROM sweeps WHERE id = ?", (run_id,))  # a sweep's cells keep their runs
            db.execute("DELETE FROM sweep_runs WHERE sweep_id = ? OR run_id = ?", (run_id, run_id))
        shutil.rmtree(self.run_dir(run_id), ignore_errors=True)

    def request_stop(self, run_id: str) -> None:
        self.update(run_id, stop_requested=1)

    def stop_requested(self, run_id: str) -> bool:
        with self._connect() as db:
            row = db.execute("SELECT stop_requested FROM runs WHERE id = ?", (run_id,)).fetchone()
        return bool(row and row[0])

    # -- events ---------------------------------------------------------------------------
    def append_events(self, run_id: str, events: list[dict], lease: str | None = None) -> None:
        if not events:
            return
        now = time.time()
        with self._write() as db:
            self._lease(db, run_id, lease)
            (last,) = db.execute("SELECT COALESCE(MAX(seq), 0) FROM events WHERE run_id = ?", (run_id,)).fetchone()
            db.executemany(
                "INSERT INTO events (run_id, seq, t, data) VALUES (?, ?, ?, ?)",
                [(run_id, last + i, now, json.dumps(e)) for i, e in enumerate(events, 1)],
            )
            db.execute("UPDATE runs SET heartbeat = ?, updated = ? WHERE id = ?", (now, now, run_id))

    def truncate_events(self, run_id: str, keep_through: int, lease: str | None = None) -> None:
        """Forget the events after seq `keep_through` (what a resumed run will redo)."""
        with self._write() as db:
            self._lease(db, run_id, lease)
            db.execute("DELETE FROM events WHERE run_id = ? AND seq > ?", (run_id, keep_through))

    def has_events(self, run_id: str) -> bool:
        with self._connect() as db:
            return db.execute("SELECT 1 FROM events WHERE run_id = ? LIMIT 1", (run_id,)).fetchone() is not None

    def events(self, run_id: str, since: int = 0) -> list[tuple[int, dict]]:
        """(seq, event) with seq > since, in order: a page polls with the last seq it saw."""
        with self._connect() as db:
            rows = db.execute(
                "SELECT seq, data FROM events WHERE run_id = ? AND seq > ? ORDER BY seq", (run_id, since)
            ).fetchall()
        return [(seq, json.loads(data)) for seq, data in rows]

    # -- weights --------------------------------------------------------------------------
    def run_dir(self, run_id: str) -> Path:
        if not RUN_ID.match(run_id):
            raise ValueError(f"not a run id: {run_id!r}")
        return self.root / run_id

    def weights_path(self, run_id: str, model: str) -> Path:
        if model not in STAGES:
            raise ValueError(f"model must be one of {STAGES}, got {model!r}")
        return self.run_dir(run_id) / f"{model}.safetensors"

    def checkpoint_path(self, run_id: str) -> Path:
        """The last epoch-end checkpoint of the stage in progress (kd/checkpoint.py)."""
        return self.run_dir(run_id) / "checkpoint.safetensors"

    def save_weights(self, run_id: str, model_name: str, state: dict, config: dict, arch: str) -> Path:
        """Write to a temporary file, then rename: a crash never leaves a half-written file."""
        from safetensors.torch import save_file

        path = self.weights_path(run_id, model_name)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        try:
            save_file(
                state,
                str(tmp),
                metadata={
                    "config": json.dumps(config, sort_keys=True),
                    "model": model_name,
                    "arch": arch,
                    "run_id": run_id,
                },
            )
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        return path


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _run(row: tuple) -> Run:
    (
        id_,
        created,
        updated,
        status,
        config,
        results,
        message,
        pid,
        heartbeat,
        stop,
        host,
        resumed,
        token,
        pid_start,
        queued_at,
        name,
    ) = row
    return Run(
        id_,
        created,
        updated,
        status,
        json.loads(config),
        json.loads(results) if results else None,
        message,
        pid,
        heartbeat,
        bool(stop),
        host,
        resumed or 0,
        token,
        pid_start,
        queued_at,
        name,
    )

"""Nothing lost: kill -9 and resume, four runs at once, stop within 2 s,
a full disk or an unwritable runs folder. Real worker processes, real store, real files."""

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from kd import checkpoint, jobs, runner
from kd.cli import train_argv
from kd.config import RunConfig
from kd.errors import KDError
from kd.store import Store, StoreError

ROOT = Path(__file__).resolve().parents[1]
# Small enough to finish in seconds, long enough to be killed in every stage: 21 steps per
# epoch on digits, one step event per step, ~400 events in all.
CFG = RunConfig(
    dataset="digits", teacher="mlp-512-256", student="mlp-128", epochs=6, teacher_epochs=6, device="cpu", seed=3
)


def cli(*args: str, runs: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "kd", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "KD_RUNS_DIR": str(runs)},
    )


def wait_for(predicate, timeout: float, every: float = 0.02):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"gave up after {timeout} s")


def weights(store: Store, run_id: str) -> dict[str, dict]:
    return {m: load_file(str(store.weights_path(run_id, m))) for m in ("teacher", "baseline", "student")}


def epochs_seen(store: Store, run_id: str) -> list[tuple]:
    return [
        (e["stage"], e["epoch"], e["train_acc"], e["val_acc"]) for _, e in store.events(run_id) if e["kind"] == "epoch"
    ]


def test_kill_9_at_random_points_then_resume_finishes_exactly_as_if_never_killed(tmp_path):
    ref_runs, runs = tmp_path / "ref", tmp_path / "killed"
    ref = cli(*train_argv(CFG), "--json", runs=ref_runs)
    out, err = ref.communicate(timeout=300)
    assert ref.returncode == 0, err
    ref_store = Store(ref_runs)
    ref_id = json.loads(out)["run_id"]
    total_events = len(ref_store.events(ref_id))

    store = Store(runs)
    rng = random.Random(int(os.environ.get("KD_KILL_SEED", "0")))
    targets = sorted(rng.sample(range(20, total_events - 20), 3))  # kill once this many events are stored
    proc, run_id, partial = cli(*train_argv(CFG), runs=runs), None, 0
    for kills, target in enumerate(targets):
        run_id = run_id or wait_for(lambda: (store.runs() or [None])[0], 60).id
        wait_for(lambda run_id=run_id, kills=kills: store.get(run_id).resumed == kills, 60)  # the new process took over
        wait_for(
            lambda run_id=run_id, target=target, proc=proc: (
                len(store.events(run_id)) >= target or proc.poll() is not None
            ),
            120,
        )
        assert proc.poll() is None, "the run finished before it could be killed"
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        # The store stays readable, the run shows as interrupted at once (its process is gone),
        # and what it kept loads: finished stages' weights and the last checkpoint.
        run = store.get(run_id)
        assert jobs.status(run) == "interrupted"
        assert store.events(run_id)
        for path in store.run_dir(run_id).glob("*.safetensors"):
            if path.name == "checkpoint.safetensors":
                ckpt, _ = checkpoint.load(path)
                assert ckpt.epoch >= 1 and ckpt.model
                partial += not store.weights_path(run_id, ckpt.stage).exists()  # its stage unfinished
            else:
                assert load_file(str(path))
        proc = cli("resume", run_id, runs=runs)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert partial >= 1, "no kill landed after a checkpoint of an unfinished stage"

    run = store.get(run_id)
    assert run.status == "done" and run.resumed == 3
    assert not store.checkpoint_path(run_id).exists()  # finished: the checkpoint is no longer needed
    # Bit for bit the uninterrupted run: weights, every epoch's figures, the test metrics.
    got, want = weights(store, run_id), weights(ref_store, ref_id)
    for model in want:
        assert got[model].keys() == want[model].keys()
        for k in want[model]:
            assert torch.equal(got[model][k], want[model][k]), (model, k)
    assert epochs_seen(store, run_id) == epochs_seen(ref_store, ref_id)
    steps = lambda s, i: [(e["stage"], e["step"]) for _, e in s.events(i) if e["kind"] == "step"]
    assert steps(store, run_id) == steps(ref_store, ref_id)  # no step twice, none missing
    for model in want:
        assert run.models[model]["accuracy"] == ref_store.get(ref_id).models[model]["accuracy"]


def test_four_runs_at_once_each_keep_their_own_events_and_metrics(runs_dir):
    store = Store(runs_dir)
    configs = [CFG.replace(epochs=e, teacher_epochs=e, seed=e) for e in (2, 3, 4, 5)]
    ids = [jobs.start(cfg, store) for cfg in configs]
    wait_for(lambda: all(store.get(i).status not in jobs.ACTIVE for i in ids), 300, every=0.5)
    for run_id, cfg in zip(ids, configs):
        run = store.get(run_id)
        log = (store.run_dir(run_id) / "worker.log").read_text()
        assert run.status == "done", log
        assert "locked" not in log and "Traceback" not in log
        events = [e for _, e in store.events(run_id)]
        per_stage = {
            s: [e["epoch"] for e in events if e["kind"] == "epoch" and e["stage"] == s]
            for s in ("teacher", "baseline", "student")
        }
        assert per_stage == {s: list(range(1, cfg.epochs + 1)) for s in per_stage}  # its own, in order
        assert {m: run.models[m]["epochs"] for m in run.models} == {m: cfg.epochs for m in run.models}
        assert RunConfig.from_dict(run.config) == cfg


def test_stop_takes_effect_within_2_s_and_keeps_the_partial_results(runs_dir):
    store = Store(runs_dir)
    run_id = jobs.start(CFG.replace(epochs=200, teacher_epochs=200), store)
    wait_for(lambda: any(e["kind"] == "epoch" for _, e in store.events(run_id)), 60)
    asked = time.monotonic()
    jobs.stop(run_id, store)
    wait_for(lambda: store.get(run_id).status == "stopped", 10, every=0.02)
    assert time.monotonic() - asked < 2.0
    run = store.get(run_id)
    assert "stopped by request" in run.message
    teacher = run.models["teacher"]
    assert teacher["status"] == "stopped" and teacher["epochs"] >= 1 and 0 < teacher["accuracy"] <= 1
    assert load_file(str(store.weights_path(run_id, "teacher")))  # its weights were saved
    # ... and it can go on from where it stopped.
    lease = jobs.claim(store, run_id, jobs.resumable, requeue=True, verb="resumed")
    runner.prepare_resume(store, run_id, lease)
    assert store.get(run_id).status == "queued" and store.get(run_id).token == lease


def test_a_finished_or_unknown_run_cannot_be_resumed(runs_dir):
    store = Store(runs_dir)
    with pytest.raises(KDError, match="no such run"):
        runner.resume_run(store, "20260101-000000-abcdef")
    run_id = store.create_run(CFG.to_dict(), status="done")
    with pytest.raises(KDError, match="it has finished"):
        runner.resume_run(store, run_id)
    p = cli("resume", run_id, runs=runs_dir)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 2 and err.strip().count("\n") == 0 and "cannot be resumed" in err


def test_an_unwritable_runs_folder_is_one_clear_line_and_no_run(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    p = cli(*train_argv(CFG.replace(epochs=1, teacher_epochs=1)), runs=blocker / "runs")
    _, err = p.communicate(timeout=120)
    assert p.returncode == 2
    assert err.count("\n") == 1 and "runs folder" in err and "KD_RUNS_DIR" in err and "Traceback" not in err
    assert os.listdir(tmp_path) == ["a-file"]  # nothing written anywhere


def test_a_full_disk_is_refused_at_start_with_the_figures_and_leaves_no_run(runs_dir, monkeypatch):
    store = Store(runs_dir)
    import shutil

    free_mb = shutil.disk_usage(runs_dir).free / 1e6
    monkeypatch.setenv("KD_MIN_FREE_MB", str(free_mb + 1000))  # more than this disk has left
    with pytest.raises(StoreError, match="disk is full") as e:
        jobs.start(CFG, store)
    assert "MB free" in str(e.value) and "KD_RUNS_DIR" in str(e.value)
    p = cli(*train_argv(CFG), runs=runs_dir)
    _, err = p.communicate(timeout=120)
    assert p.returncode == 2 and "disk is full" in err and err.count("\n") == 1
    assert store.runs() == [] and [f.name for f in runs_dir.iterdir() if f.is_dir()] == []


STOPPED_RUNS = {
    # Conv models train in channels_last on a CPU while their checkpoints are contiguous: BN
    # statistics and Adam moments must come back in the right layout.
    "conv teacher": (
        RunConfig(
            dataset="digits", teacher="cnn-x0.5", student="cnn-x0.25", epochs=2, teacher_epochs=4, device="cpu", seed=2
        ),
        "teacher",
    ),
    # Methods with parameters of their own: ctkd's learned temperature, fitnet's adapter (a conv
    # with BatchNorm): optimised, checkpointed and resumed with the student's.
    "ctkd": (
        RunConfig(
            dataset="digits", method="ctkd", epochs=4, teacher_epochs=1, device="cpu", seed=2, options={"ctkd_ramp": 3}
        ),
        "student",
    ),
    "fitnet": (
        RunConfig(
            dataset="digits",
            method="fitnet",
            teacher="cnn-x0.5",
            student="cnn-x0.25",
            epochs=4,
            teacher_epochs=1,
            device="cpu",
            seed=2,
        ),
        "student",
    ),
}


@pytest.mark.parametrize("case", STOPPED_RUNS)
def test_a_stopped_run_resumes_to_the_same_bits(case, runs_dir):
    """A run stopped after the first epoch of a stage and resumed ends with exactly the weights
    (and the logged figures) of one never stopped."""
    cfg, stage = STOPPED_RUNS[case]
    store = Store()
    whole, _ = runner.train_new(store, cfg)
    stopped = store.create_run(cfg.to_dict(), lease="first-worker")

    def stop_after_first_epoch(event):
        if event["kind"] == "epoch" and event["stage"] == stage and event["epoch"] == 1:
            store.update(stopped, stop_requested=1)

    first = runner.run_owned(store, stopped, "first-worker", progress=stop_after_first_epoch)
    assert first.status == "stopped" and first.stages[stage].epochs < (cfg.epochs if stage == "student" else 4)
    assert store.checkpoint_path(stopped).exists()
    assert runner.resume_run(store, stopped).status == "done"
    a, b = weights(store, whole), weights(store, stopped)
    for model in a:
        assert a[model].keys() == b[model].keys()
        for k in a[model]:
            assert torch.equal(a[model][k], b[model][k]), (model, k)
    logged = [
        [(e["stage"], e["epoch"], e["val_acc"], e.get("method")) for _, e in store.events(r) if e["kind"] == "epoch"]
        for r in (whole, stopped)
    ]
    assert logged[0] == logged[1]
    if case == "ctkd":  # the learned temperature moved, and went on from where it stood
        temps = [m["T"] for (st, _, _, m) in logged[0] if st == "student"]
        assert len(temps) == 4 and len(set(temps)) == 4


@pytest.fixture
def small_disk(tmp_path):
    """A real 24 MB file system (tmpfs) for a runs folder; skipped where mounting is not allowed."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if (
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(mount)], capture_output=True).returncode
        != 0
    ):
        pytest.skip("cannot mount a tmpfs here (needs root in a machine that allows it)")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def test_a_disk_that_fills_mid_run_fails_it_in_one_line_and_it_resumes_once_space_is_freed(small_disk, tmp_path):
    """Before: four chained tracebacks that hid the cause, and the run stayed "running"."""
    runs = small_disk / "runs"
    env = {**os.environ, "KD_RUNS_DIR": str(runs), "KD_MIN_FREE_MB": "0"}
    cfg = CFG.replace(epochs=40, teacher_epochs=40)
    proc = subprocess.Popen(
        [sys.executable, "-m", "kd", *train_argv(cfg)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    store = Store(runs)
    run_id = wait_for(lambda: (store.runs() or [None])[0], 120).id
    wait_for(lambda: any(e["kind"] == "epoch" for _, e in store.events(run_id)), 120)
    filler = small_disk / "filler"
    with open(filler, "wb") as f:  # take every free byte
        try:
            while True:
                f.write(b"\0" * (1 << 16))
                f.flush()
        except OSError:
            pass
    _, err = proc.communicate(timeout=300)
    lines = [line for line in err.splitlines() if line.startswith("error")]
    assert proc.returncode == 2 and "Traceback" not in err, err
    assert len(lines) == 1 and lines[0].startswith("error: disk full") and "resume" in lines[0], err
    run = Store(runs, check=False).get(run_id)
    assert run.status == "failed" and run.message.startswith("disk full"), run
    assert not list(store.run_dir(run_id).glob("*.tmp"))  # no half-written file left
    filler.unlink()  # space is freed: the run goes on from its last checkpoint to the end
    p = subprocess.run(
        [sys.executable, "-m", "kd", "resume", run_id, "--json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["status"] == "done"
    per_stage = {
        s: [e["epoch"] for _, e in store.events(run_id) if e["kind"] == "epoch" and e["stage"] == s]
        for s in ("teacher", "baseline", "student")
    }
    assert per_stage == {s: list(range(1, 41)) for s in per_stage}


def test_a_run_owns_the_teacher_it_reused_and_resumes_after_that_run_is_deleted(runs_dir):
    """Before: once the run whose teacher was reused was deleted, Resume started a worker that
    died at once (the error only in worker.log) while the page said nothing was lost."""
    store = Store(runs_dir)
    first, _ = runner.train_new(store, CFG.replace(epochs=1, teacher_epochs=3))
    given = str(store.weights_path(first, "teacher"))
    run_id = jobs.start(CFG.replace(epochs=40, teacher_checkpoint=given), store)
    own = store.run_dir(run_id) / jobs.TEACHER_COPY
    assert store.get(run_id).config["teacher_checkpoint"] == str(own.resolve())
    assert own.read_bytes() == Path(given).read_bytes()
    wait_for(lambda: any(e["kind"] == "epoch" for _, e in store.events(run_id)), 120)
    jobs.stop(run_id, store)
    wait_for(lambda: store.get(run_id).status == "stopped", 60)
    store.delete(first)
    assert not Path(given).exists()
    jobs.resume(run_id, store)
    wait_for(lambda: store.get(run_id).status not in jobs.ACTIVE, 300, every=0.2)
    run = store.get(run_id)
    assert run.status == "done", (run.message, (store.run_dir(run_id) / "worker.log").read_text()[-2000:])
    assert run.models["teacher"]["status"] == "loaded"

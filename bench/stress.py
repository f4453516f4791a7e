"""Stress: runs killed, frozen, stopped and resumed at random, then checked against undisturbed twins.

Starts N runs (half from the CLI, `python -m kd train`, half as the dashboard starts them,
`jobs.start`), then for a fixed time picks a run at random every moment and does to it what a
hostile user or an unlucky machine would: kill -9 its process, freeze it (SIGSTOP, woken
later), ask it to stop, resume it (from the CLI or through the same call the Live page makes),
and try to resume runs that are still alive (each such try must be refused). When the time is
up every frozen process is woken and every unfinished run resumed until all are done. Then each
run is compared with a twin, the same config trained once without disturbance:
- events: every epoch of every stage exactly once, the same step sequence (no step twice, none
  missing), the same per-epoch figures;
- status "done", final weights bit for bit, test accuracies equal.
Prints a summary and writes it to bench/results/stress-DATE-TIME.json (command, commit, machine).

usage: python bench/stress.py [--runs 8] [--minutes 10] [--epochs 400] [--seed 0] [--json]
"""

import argparse
import json
import os
import platform
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from kd import jobs  # noqa: E402
from kd.cli import train_argv  # noqa: E402
from kd.config import RunConfig  # noqa: E402
from kd.errors import KDError  # noqa: E402
from kd.store import Store  # noqa: E402

STAGES = ("teacher", "baseline", "student")


def cli(args: list[str], runs: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "kd", *args],
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "KD_RUNS_DIR": str(runs)},
        start_new_session=True,
    )


def alive(pid) -> bool:
    from kd.lease import pid_alive

    return bool(pid) and pid_alive(pid)


def compare(store: Store, run_id: str, twin: Store, twin_id: str, epochs: int) -> list[str]:
    """What differs between a disturbed run and its twin (empty: nothing)."""
    import torch
    from safetensors.torch import load_file

    problems = []
    run, ref = store.get(run_id), twin.get(twin_id)
    if run.status != "done":
        return [f"status {run.status} ({run.message})"]
    events = [e for _, e in store.events(run_id)]
    ref_events = [e for _, e in twin.events(twin_id)]
    for stage in STAGES:
        seen = [e["epoch"] for e in events if e["kind"] == "epoch" and e["stage"] == stage]
        if seen != list(range(1, epochs + 1)):
            twice = len(seen) - len(set(seen))
            problems.append(f"{stage}: epochs {len(seen)} events for {epochs} ({twice} twice)")
    steps = [(e["stage"], e["step"]) for e in events if e["kind"] == "step"]
    ref_steps = [(e["stage"], e["step"]) for e in ref_events if e["kind"] == "step"]
    if steps != ref_steps:
        problems.append(
            f"steps: {len(steps)} events, {len(steps) - len(set(steps))} twice, "
            f"{len(set(ref_steps) - set(steps))} missing"
        )
    fig = lambda evs: [(e["stage"], e["epoch"], e["train_acc"], e["val_acc"]) for e in evs if e["kind"] == "epoch"]  # noqa: E731
    if fig(events) != fig(ref_events):
        problems.append("per-epoch figures differ")
    for model in STAGES:
        a = load_file(str(store.weights_path(run_id, model)))
        b = load_file(str(twin.weights_path(twin_id, model)))
        if a.keys() != b.keys() or not all(torch.equal(a[k], b[k]) for k in a):
            problems.append(f"{model}: weights differ")
        if run.models[model]["accuracy"] != ref.models[model]["accuracy"]:
            problems.append(f"{model}: test accuracy differs")
    return problems


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=8)
    p.add_argument("--minutes", type=float, default=10.0, help="how long the disturbances go on")
    p.add_argument("--epochs", type=int, default=400, help="epochs per stage (digits, the default pair)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true")
    p.add_argument("--keep", action="store_true", help="keep the runs folders")
    args = p.parse_args()
    rng = random.Random(args.seed)
    work = Path(tempfile.mkdtemp(prefix="kd-stress-"))
    runs, twins = work / "runs", work / "twins"
    os.environ["KD_RUNS_DIR"] = str(runs)
    store = Store(runs)
    configs = [
        RunConfig(epochs=args.epochs, teacher_epochs=args.epochs, device="cpu", seed=k) for k in range(args.runs)
    ]
    started = time.time()
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()

    # -- start: half from the CLI, half as the dashboard does --------------------------------
    procs: list[subprocess.Popen] = []
    ids: list[str] = []
    for k, cfg in enumerate(configs):
        if k % 2 == 0:
            procs.append(cli(train_argv(cfg), runs))
            deadline = time.time() + 120
            while len(store.runs()) < len(ids) + 1 and time.time() < deadline:
                time.sleep(0.1)
            ids.append(next(r.id for r in store.runs() if r.id not in ids))
        else:
            ids.append(jobs.start(cfg, store))
    seed_of = {run_id: cfg.seed for run_id, cfg in zip(ids, configs)}

    # -- disturb ---------------------------------------------------------------------------
    counts = {
        k: 0
        for k in ("kill", "freeze", "stop", "resume_cli", "resume_page", "resume_refused", "resume_of_live_accepted")
    }
    frozen: dict[int, float] = {}  # pid -> when to wake it
    chaos_from = time.time()
    until = chaos_from + 60 * args.minutes
    while time.time() < until:
        now = time.time()
        for pid, wake in list(frozen.items()):
            if now >= wake:
                with _quiet():
                    os.kill(pid, signal.SIGCONT)
                del frozen[pid]
        all_runs = {r.id: r for r in store.runs()}
        if all(r.status == "done" for r in all_runs.values()):
            break
        choices = [r for r in all_runs.values() if r.status != "done" and r.pid not in frozen]
        if not choices:
            time.sleep(0.2)
            continue
        run = rng.choice(choices)
        state = jobs.status(run)
        if state in jobs.ACTIVE and run.token and alive(run.pid) and run.pid not in frozen:
            action = rng.choices(["kill", "freeze", "stop", "resume"], [3, 2, 1, 2])[0]
            if action == "kill":
                with _quiet():
                    os.kill(run.pid, signal.SIGKILL)
                counts["kill"] += 1
            elif action == "freeze":
                with _quiet():
                    os.kill(run.pid, signal.SIGSTOP)
                frozen[run.pid] = now + rng.uniform(1, 20)
                counts["freeze"] += 1
            elif action == "stop":
                jobs.stop(run.id, store)
                counts["stop"] += 1
            else:  # a resume of a live run: must be refused
                try:
                    jobs.resume(run.id, store)
                    counts["resume_of_live_accepted"] += 1
                except KDError:
                    counts["resume_refused"] += 1
        elif state in jobs.RESUMABLE:
            if rng.random() < 0.5:
                procs.append(cli(["resume", run.id], runs))
                counts["resume_cli"] += 1
            else:
                try:
                    jobs.resume(run.id, store)
                    counts["resume_page"] += 1
                except KDError:
                    counts["resume_refused"] += 1
        time.sleep(rng.uniform(0.1, 1.0))
    disturbed_s = time.time() - chaos_from

    # -- finish: wake everything, resume whatever is not done --------------------------------
    for pid in frozen:
        with _quiet():
            os.kill(pid, signal.SIGCONT)
    deadline = time.time() + 3600
    while time.time() < deadline:
        pending = [r for r in store.runs() if r.status != "done"]
        if not pending:
            break
        for r in pending:
            if jobs.status(r) in jobs.RESUMABLE:
                try:
                    jobs.resume(r.id, store)
                except KDError:
                    pass
        time.sleep(1)
    for proc in procs:
        try:
            proc.wait(timeout=600)
        except subprocess.TimeoutExpired:
            proc.kill()

    # -- twins ------------------------------------------------------------------------------
    twin_store, twin_of = Store(twins), {}
    for k in range(0, len(configs), 2):
        batch = [cli(train_argv(cfg), twins) for cfg in configs[k : k + 2]]
        for proc in batch:
            proc.wait()
    for r in twin_store.runs():
        twin_of[r.config["seed"]] = r.id
    problems = {run_id: compare(store, run_id, twin_store, twin_of[seed_of[run_id]], args.epochs) for run_id in ids}

    runs_all = {r.id: r for r in store.runs()}
    result = {
        "command": "python bench/stress.py " + " ".join(sys.argv[1:]),
        "commit": commit + (" (with uncommitted changes)" if dirty else ""),
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "machine": f"{platform.platform()}, {os.cpu_count()} cores, python {platform.python_version()}",
        "runs": args.runs,
        "epochs_per_stage": args.epochs,
        "disturbed_s": round(disturbed_s, 1),
        "total_s": round(time.time() - started, 1),
        "disturbances": counts,
        "resumed_total": sum(r.resumed for r in runs_all.values()),
        "runs_done": sum(r.status == "done" for r in runs_all.values()),
        "runs_lost": sum(r.status != "done" for r in runs_all.values()),
        "runs_with_duplicated_or_missing_events": sum(
            any("epochs" in x or "steps" in x for x in v) for v in problems.values()
        ),
        "runs_different_from_twin": sum(bool(v) for v in problems.values()),
        "problems": {k: v for k, v in problems.items() if v},
    }
    out = ROOT / "bench" / "results" / f"stress-{time.strftime('%Y-%m-%d-%H%M')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    if args.json:
        print(json.dumps(result))
    else:
        print(
            f"{args.runs} runs, {args.epochs} epochs a stage, disturbed for {disturbed_s:.0f} s "
            f"({result['total_s']:.0f} s in all)"
        )
        print(
            f"disturbances: {counts['kill']} kill -9, {counts['freeze']} freezes, {counts['stop']} stops; "
            f"resumes asked: {counts['resume_cli']} from the CLI (some refused: another took the run first), "
            f"{counts['resume_page']} accepted through the page's call, {counts['resume_refused']} refused "
            f"there (the run was alive or queued), {counts['resume_of_live_accepted']} accepted while alive"
        )
        print(f"resumes that reached training (the runs' resume counters summed): {result['resumed_total']}")
        print(
            f"runs done: {result['runs_done']}/{args.runs}; lost: {result['runs_lost']}; "
            f"with duplicated or missing events: {result['runs_with_duplicated_or_missing_events']}; "
            f"different from their twin: {result['runs_different_from_twin']}"
        )
        for run_id, v in result["problems"].items():
            print(f"  {run_id}: {'; '.join(v)}")
        print(f"written to {out.relative_to(ROOT)}")
    if not args.keep:
        import shutil

        shutil.rmtree(work, ignore_errors=True)
    else:
        print(f"runs kept in {work}")


class _quiet:
    """Ignore a process that has already ended."""

    def __enter__(self):
        return self

    def __exit__(self, kind, value, tb):
        return kind is ProcessLookupError


if __name__ == "__main__":
    main()

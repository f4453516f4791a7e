"""Does watching a run cost it speed, and how fast does the live page redraw?

0. The quick demo clicked on Home in chromium with the dashboard's standby worker ready: seconds
   from the click to the first point on the live loss chart and to "See the results" (median of
   --demo-repeats), beside the same run's wall time and samples/s from the CLI, alternated.
1. Throughput: the same run from the CLI, and started by the dashboard with its Live page open
   in headless chromium, alternated A/B/A/B; compares the mean samples/s of the training steps
   and the wall time. Two cases: MNIST with the seed pair (3 epochs a stage: big steps), and the
   default pair on digits (150 epochs a stage: many tiny steps, many events). Then the CPU
   seconds the browser, the server and the run use over 20 s of an MNIST run watched live.
2. Redraw: the Live page (server side, AppTest) on a run of 10,000 events: first draw (loads
   every event) and a redraw, median of several.

usage: python bench/dashboard.py [--data-dir ../shared/data] [--repeats 2] [--cases mnist digits] [--json]
Writes bench/results/dashboard-DATE-TIME.json.
"""

import argparse
import contextlib
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
from record import write  # noqa: E402

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]


class Server(str):
    """The dashboard's base URL, with its process (to kill it, as a crash would)."""

    process: subprocess.Popen


@contextlib.contextmanager
def dashboard(env: dict):
    """`streamlit run app.py` on a free localhost port with env; yields its base URL (a Server)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true", "--server.port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.3)
        url = Server(f"http://localhost:{port}")
        url.process = server
        yield url
    finally:
        if server.poll() is None:
            server.terminate()  # Streamlit lets a script run in progress finish first: on a busy
        try:  # machine that can take longer than we wait, so then it is killed
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(10)


def mean_speed(store, run_id: str) -> float:
    speeds = [e["samples_per_s"] for _, e in store.events(run_id) if e["kind"] == "step" and e.get("samples_per_s")]
    return statistics.mean(speeds)


CASES = {  # name: (RunConfig fields, CLI flags); the second is the default pair on the default data
    "mnist": (
        lambda a: dict(dataset="mnist", data_dir=a.data_dir, epochs=3, teacher_epochs=3, device="cpu"),
        lambda a: [
            "--dataset",
            "mnist",
            "--data-dir",
            a.data_dir,
            "--epochs",
            "3",
            "--teacher-epochs",
            "3",
            "--device",
            "cpu",
        ],
    ),
    "digits": (
        lambda a: dict(epochs=150, teacher_epochs=150, device="cpu"),
        lambda a: ["--epochs", "150", "--teacher-epochs", "150", "--device", "cpu"],
    ),
}


def throughput(args, case: str) -> dict:
    from playwright.sync_api import sync_playwright

    from kd import jobs
    from kd.config import RunConfig
    from kd.store import Store

    runs = tempfile.mkdtemp(prefix="kd-bench-")
    env = {**os.environ, "KD_RUNS_DIR": runs}
    os.environ["KD_RUNS_DIR"] = runs
    store = Store(runs)
    fields, flags = CASES[case]
    cfg, train = RunConfig(**fields(args)), flags(args)
    cli, watched, cli_s, watched_s = [], [], [], []
    with dashboard(env) as base, sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=FLAGS)
        page = browser.new_page()
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            out = subprocess.run(
                [sys.executable, "-m", "kd", "train", *train, "--json"],
                cwd=ROOT,
                env=env,
                capture_output=True,
                text=True,
                check=True,
            )
            cli_s.append(time.perf_counter() - t0)
            cli.append(mean_speed(store, json.loads(out.stdout)["run_id"]))
            t0 = time.perf_counter()
            run_id = jobs.start(cfg, store)
            page.goto(f"{base}/live?run={run_id}")
            page.get_by_text("See the results").wait_for(timeout=900_000)
            watched_s.append(time.perf_counter() - t0)
            watched.append(mean_speed(store, run_id))
        browser.close()
    return {
        "cli_samples_per_s": cli,
        "watched_samples_per_s": watched,
        "watched_over_cli": statistics.mean(watched) / statistics.mean(cli),
        "cli_wall_s": cli_s,
        "watched_wall_s": watched_s,
    }


FIRST_POINT_JS = """() => Array.from(document.querySelectorAll('.st-key-loss .js-plotly-plot'))
    .some(g => (g.data || []).some(t => t.x && (t.x.length > 0 || (t.x.bdata || '').length > 0)))"""
# (a numpy column reaches Plotly as {dtype, bdata}, base64, with no length of its own)


def _standby_settled(timeout: float = 120.0) -> None:
    """Wait until the dashboard's standby worker (`python -m kd standby`) has loaded what it
    loads and stopped using the CPU: the machine is idle before the click."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        pids = [pid for pid in _pids("kd standby")]
        if pids:
            before = sum(map(_cpu_s, pids))
            time.sleep(0.5)
            if sum(map(_cpu_s, pids)) == before:
                return
        else:
            time.sleep(0.2)
    raise SystemExit("no standby worker settled: is KD_WARM_WORKER set to 0?")


def quick_demo(args) -> dict:
    """Home's quick demo clicked in chromium: seconds from the click to the first point on a
    live chart and to "See the results", on an idle machine with the dashboard's standby worker
    ready; alternated with the same run from the CLI (`python -m kd train`, wall time from the
    command to its exit). Samples/s of the two compared (watched / CLI)."""
    from playwright.sync_api import sync_playwright

    from kd import service
    from kd.cli import train_argv
    from kd.store import Store

    runs = tempfile.mkdtemp(prefix="kd-bench-")
    env = {**os.environ, "KD_RUNS_DIR": runs, "KD_WARM_WORKER": "1"}
    os.environ["KD_RUNS_DIR"] = runs
    store, argv = Store(runs), train_argv(service.quick_demo())
    first, done, cli_s, cli, watched = [], [], [], [], []
    with dashboard(env) as base, sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=FLAGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        for _ in range(args.demo_repeats):
            t0 = time.perf_counter()
            out = subprocess.run(
                [sys.executable, "-m", "kd", *argv, "--json"], cwd=ROOT, env=env, capture_output=True, text=True
            )
            cli_s.append(time.perf_counter() - t0)
            cli.append(mean_speed(store, json.loads(out.stdout)["run_id"]))
            page.goto(f"{base}/")
            button = page.get_by_role("button", name="Run the quick demo")
            button.wait_for(timeout=120_000)
            _standby_settled()
            t0 = time.perf_counter()
            button.click()
            page.wait_for_function(FIRST_POINT_JS, timeout=120_000, polling=50)
            first.append(time.perf_counter() - t0)
            page.get_by_text("See the results").wait_for(timeout=300_000)
            done.append(time.perf_counter() - t0)
            watched.append(mean_speed(store, page.url.split("run=")[1].split("&")[0]))
        browser.close()
    return {
        "config": argv,
        "click_to_first_point_s": first,
        "click_to_done_s": done,
        "cli_wall_s": cli_s,
        "first_point_median_s": statistics.median(first),
        "done_median_s": statistics.median(done),
        "cli_median_s": statistics.median(cli_s),
        "cli_samples_per_s": cli,
        "watched_samples_per_s": watched,
        "watched_over_cli": statistics.median(watched) / statistics.median(cli),
    }


def _pids(cmdline_part: str) -> list[int]:
    """Processes whose command line contains `cmdline_part`."""
    out = []
    for d in os.listdir("/proc"):
        try:
            if d.isdigit() and cmdline_part in Path(f"/proc/{d}/cmdline").read_bytes().replace(b"\0", b" ").decode():
                out.append(int(d))
        except OSError:
            pass
    return out


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process so far (Linux /proc; 0 if it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except OSError:
        return 0.0


def _chromium_pids() -> list[int]:
    pids = []
    for d in os.listdir("/proc"):
        try:
            if d.isdigit() and "chrom" in Path(f"/proc/{d}/comm").read_text():
                pids.append(int(d))
        except OSError:
            pass
    return pids


def watching_cpu(args, seconds: float = 20.0) -> dict:
    """CPU seconds the browser, the server and the run use over `seconds` of an MNIST run
    (seed pair) trained with its Live page open: what watching costs the machine."""
    from playwright.sync_api import sync_playwright

    from kd import jobs
    from kd.config import RunConfig
    from kd.store import Store

    runs = tempfile.mkdtemp(prefix="kd-bench-")
    store = Store(runs)
    cfg = RunConfig(dataset="mnist", data_dir=args.data_dir, epochs=30, teacher_epochs=30, device="cpu")
    with dashboard({**os.environ, "KD_RUNS_DIR": runs}) as base, sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=FLAGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        run_id = jobs.start(cfg, store)
        page.goto(f"{base}/live?run={run_id}")
        page.get_by_text("events", exact=False).last.wait_for(timeout=120_000)
        groups = {"browser": _chromium_pids(), "server": [base.process.pid], "run": [store.get(run_id).pid]}
        before = {k: sum(map(_cpu_s, pids)) for k, pids in groups.items()}
        time.sleep(seconds)
        used = {k: sum(map(_cpu_s, pids)) - before[k] for k, pids in groups.items()}
        jobs.stop(run_id, store)
        browser.close()
    return {"seconds": seconds, **{f"{k}_cpu_s": v for k, v in used.items()}}


def redraw(n_events: int = 10_000, repeats: int = 5) -> dict:
    from streamlit.testing.v1 import AppTest

    from kd.config import RunConfig
    from kd.store import Store

    os.environ["KD_RUNS_DIR"] = tempfile.mkdtemp(prefix="kd-bench-")
    store = Store()
    run_id = store.create_run(RunConfig().to_dict(), status="done")
    per_stage, events = n_events // 3, []
    for stage in ("teacher", "baseline", "student"):
        events.append(
            {"kind": "stage", "stage": stage, "status": "started", "epochs": 10, "steps_per_epoch": per_stage // 10}
        )
        for i in range(per_stage):
            e = {
                "kind": "step",
                "stage": stage,
                "epoch": 1 + i * 10 // per_stage,
                "step": i + 1,
                "total_steps": per_stage,
                "loss": 1 / (1 + i),
                "loss_ce": 0.1 / (1 + i),
                "lr": 1e-3,
                "samples_per_s": 30000.0,
            }
            if stage == "student":
                e["loss_soft"] = 0.9 / (1 + i)
            events.append(e)
            if (i + 1) % (per_stage // 10) == 0:
                events.append(
                    {
                        "kind": "epoch",
                        "stage": stage,
                        "epoch": (i + 1) * 10 // per_stage,
                        "epochs": 10,
                        "step": i + 1,
                        "train_acc": 0.9,
                        "val_acc": 0.9,
                        "val_loss": 0.3,
                        "seconds": 1.0,
                    }
                )
        events.append({"kind": "stage", "stage": stage, "status": "done", "epochs": 10, "seconds": 10.0})
    store.append_events(run_id, events)
    first, again = [], []
    for _ in range(repeats):
        at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
        at.query_params["run"] = run_id
        at.run()
        at.switch_page("pages/live.py")
        t0 = time.perf_counter()
        at.run()
        first.append((time.perf_counter() - t0) * 1e3)
        t0 = time.perf_counter()
        at.run()  # a rerun with no new events: the cached figures are drawn again
        again.append((time.perf_counter() - t0) * 1e3)
        assert not at.exception
    return {"events": len(events), "first_draw_ms": statistics.median(first), "redraw_ms": statistics.median(again)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data"))
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--skip-throughput", action="store_true")
    ap.add_argument(
        "--cases",
        nargs="+",
        choices=list(CASES),
        default=list(CASES),
        help="mnist: the seed pair, 3 epochs a stage; digits: the default pair, 150 epochs a stage",
    )
    ap.add_argument("--demo-repeats", type=int, default=5, help="clicks of the quick demo (median)")
    ap.add_argument("--demo-only", action="store_true", help="only the quick demo's click-to-first-point")
    args = ap.parse_args()
    out = {"quick_demo": quick_demo(args)}
    if not args.demo_only:
        out["redraw"] = redraw()
    if not args.skip_throughput:
        out["throughput"] = {case: throughput(args, case) for case in args.cases}
        out["watching_cpu"] = watching_cpu(args)
    path = write("dashboard", out)
    if args.json:
        print(json.dumps(out))
        return
    d = out["quick_demo"]
    print(
        f"quick demo ({' '.join(d['config'])}), median of {len(d['click_to_done_s'])}: click to first live point "
        f"{d['first_point_median_s']:.2f} s, click to results {d['done_median_s']:.2f} s; "
        f"the CLI's wall time {d['cli_median_s']:.2f} s; watched / CLI (samples/s): {d['watched_over_cli']:.3f}"
    )
    print("  first point s: " + ", ".join(f"{v:.2f}" for v in d["click_to_first_point_s"]))
    print("  samples/s CLI: " + ", ".join(f"{v:,.0f}" for v in d["cli_samples_per_s"]))
    print("  samples/s watched: " + ", ".join(f"{v:,.0f}" for v in d["watched_samples_per_s"]))
    if "redraw" not in out:
        return
    r = out["redraw"]
    print(f"live page, {r['events']:,} events: first draw {r['first_draw_ms']:.0f} ms, redraw {r['redraw_ms']:.0f} ms")
    if "watching_cpu" in out:
        w = out["watching_cpu"]
        print(
            f"CPU seconds over {w['seconds']:.0f} s of an MNIST run watched live: browser {w['browser_cpu_s']:.1f}, "
            f"server {w['server_cpu_s']:.1f}, the run {w['run_cpu_s']:.1f}"
        )
    for case, t in out.get("throughput", {}).items():
        print(
            f"{case}: samples/s from the CLI: "
            + ", ".join(f"{v:,.0f}" for v in t["cli_samples_per_s"])
            + "; wall s: "
            + ", ".join(f"{v:.1f}" for v in t["cli_wall_s"])
        )
        print(
            f"{case}: samples/s watched live: "
            + ", ".join(f"{v:,.0f}" for v in t["watched_samples_per_s"])
            + "; wall s: "
            + ", ".join(f"{v:.1f}" for v in t["watched_wall_s"])
        )
        print(f"{case}: watched / CLI (samples/s): {t['watched_over_cli']:.3f}")
    print(f"written to {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()

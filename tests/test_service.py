"""kd/service.py, the pages' one way into kd: the pages import nothing else of kd (but the plots
and the errors), it loads without torch, and a run's state reads the same through it as through
the CLI. Also kd/results.py, which finds the measured figures a page may cite."""

import ast
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from test_reliability import wait_for

from kd import results, service
from kd.config import FEW_LABELS
from kd.errors import KDError
from kd.store import Store

ROOT = Path(__file__).resolve().parents[1]
ALLOWED = {"kd.service", "kd.plots", "kd.errors"}


def kd_imports(path: Path) -> set[str]:
    """Every kd module a file imports, at its top or inside a function (`from kd import x`: kd.x)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "kd":
            out |= {f"kd.{a.name}" for a in node.names} if node.module == "kd" else {node.module}
        elif isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.split(".")[0] == "kd"}
    return out


def test_the_pages_import_from_kd_only_the_service_the_plots_and_the_errors():
    files = sorted((ROOT / "pages").rglob("*.py")) + [ROOT / "app.py"]
    assert len(files) >= 8 and kd_imports(ROOT / "pages" / "live.py") >= {"kd.service", "kd.plots"}
    wrong = {str(p.relative_to(ROOT)): sorted(kd_imports(p) - ALLOWED) for p in files if kd_imports(p) - ALLOWED}
    assert not wrong, wrong


def test_the_import_checker_sees_every_form(tmp_path):
    path = tmp_path / "page.py"
    path.write_text("import kd.jobs\nfrom kd import store, service\ndef f():\n    from kd.trainer import build_pair\n")
    assert kd_imports(path) == {"kd.jobs", "kd.store", "kd.service", "kd.trainer"}


def test_the_service_loads_without_torch():
    """The Live and Runs pages load without torch: the service imports it only where it is needed."""
    code = "import sys, kd.service, kd.plots; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_the_choices_fit_the_data_set():
    digits = service.dataset_spec("digits")
    fits = service.models_for(digits)
    assert "mlp-512-256" in fits and "lenet5" not in fits  # lenet5 cannot take 8x8 digits
    assert "kd" in service.methods() and service.methods()["none"].uses_teacher is False
    assert service.devices()[:2] == ["auto", "cpu"]
    latex, meaning = service.method_formula(service.RunConfig(), digits)
    assert "4^2" in latex and meaning
    with pytest.raises(KDError, match="convolutional"):
        service.method_formula(service.RunConfig(method="at"), digits)  # at on an MLP
    assert service.field("epochs").kind is int and "epochs" in service.fields_in("training")


def test_start_checks_first_and_an_active_run_cannot_be_deleted(runs_dir):
    with pytest.raises(KDError):
        service.start(service.RunConfig(teacher="lenet5"))  # does not fit digits: refused, no run made
    assert service.runs() == []
    run_id = service.start(service.RunConfig(epochs=200, teacher_epochs=200, device="cpu"))
    assert service.get_run(run_id).state in service.ACTIVE
    with pytest.raises(KDError, match="stop it before deleting it"):
        service.delete(run_id)
    service.stop(run_id)
    wait_for(lambda: service.get_run(run_id).state == "stopped", 120, every=0.2)
    service.delete(run_id)
    assert service.get_run(run_id) is None and service.runs() == []


def test_a_standby_worker_trains_the_next_run_and_waits_while_one_is_active(runs_dir, monkeypatch):
    """The dashboard's warm worker: Start hands the run to the waiting process (no torch import
    after the click); none is kept while a run trains; a changed environment gets a fresh process
    and ends the standby; closing its stdin ends it."""
    from kd import jobs

    monkeypatch.setenv("KD_WARM_WORKER", "1")
    try:
        service.keep_warm()
        standby = jobs.standby.proc
        assert standby is not None and standby.poll() is None
        service.keep_warm()
        assert jobs.standby.proc is standby  # one is enough
        run_id = service.start(service.RunConfig(epochs=150, teacher_epochs=150, device="cpu"))
        assert service.get_run(run_id).pid == standby.pid  # the standby took it
        service.keep_warm()
        assert jobs.standby.pid() is None  # no second process takes CPU from the run
        wait_for(lambda: service.get_run(run_id).state == "done", 300, every=0.2)
        assert standby.wait(60) == 0 and service.get_run(run_id).results["models"]["student"]["accuracy"] > 0.5
        assert "Traceback" not in (runs_dir / run_id / "worker.log").read_text()

        service.keep_warm()  # no run active: a new standby
        second = jobs.standby.proc
        assert second is not None and second.pid != standby.pid
        monkeypatch.setenv("OMP_NUM_THREADS", "1")  # a thread count it was not started with
        run_id = service.start(service.RunConfig(epochs=1, teacher_epochs=1, device="cpu"))
        assert service.get_run(run_id).pid != second.pid  # a fresh worker ...
        assert second.wait(60) == 0  # ... and the standby, of no use now, ended
        wait_for(lambda: service.get_run(run_id).state == "done", 300, every=0.2)
        service.keep_warm()
        third = jobs.standby.proc
    finally:
        jobs.standby.close()
    assert third.wait(60) == 0  # its stdin closed (as when the dashboard ends): it ends


def kd_cli(runs_dir, *args: str) -> str:
    out = subprocess.run(
        [sys.executable, "-m", "kd", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "KD_RUNS_DIR": str(runs_dir)},
        timeout=60,
        check=True,
    )
    return out.stdout


def test_a_killed_cli_run_is_interrupted_for_the_cli_and_the_dashboard_alike(runs_dir):
    """`python -m kd train`, killed with SIGKILL: within a few seconds `runs`, `runs --json`,
    `show` and `show --json` say "interrupted", as the service (the dashboard) does. Before, the
    CLI said "running" 15 s after the kill while the dashboard said "interrupted"."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "kd", "train", "--epochs", "200", "--teacher-epochs", "200", "--device", "cpu"],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "KD_RUNS_DIR": str(runs_dir)},
    )
    try:
        store = wait_for(lambda: runs_dir.joinpath("runs.db").exists() and Store(runs_dir), 120)
        run = wait_for(lambda: (store.runs() or [None])[0], 120)
        wait_for(lambda: any(e["kind"] == "epoch" for _, e in store.events(run.id)), 120)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    wait_for(lambda: service.get_run(run.id).state == "interrupted", 5)
    assert store.get(run.id).status == "running"  # stored as it was: the state is decided on reading
    assert [r.state for r in service.runs()] == ["interrupted"]
    assert f"{run.id}  interrupted" in kd_cli(runs_dir, "runs")
    assert [r["status"] for r in json.loads(kd_cli(runs_dir, "runs", "--json"))] == ["interrupted"]
    assert kd_cli(runs_dir, "show", run.id).startswith(f"run {run.id}: interrupted")
    assert json.loads(kd_cli(runs_dir, "show", run.id, "--json"))["status"] == "interrupted"


# -- kd/results.py ---------------------------------------------------------------------------------
def seeds_file(folder: Path, name: str, config: dict, gains: list[float]) -> None:
    runs = {
        str(seed): {
            "config": {**config, "seed": seed},
            "test_error": {"teacher": 2.0, "baseline": 10.0, "student": 10.0 - gain},
            "wall_s": 9.0 + seed,
        }
        for seed, gain in enumerate(gains)
    }
    (folder / name).write_text(
        json.dumps({"date": "2026-12-02 07:36:22", "seeds": list(range(len(gains))), "runs": runs})
    )


def test_measured_figures_come_from_the_newest_results_file_of_that_very_config(tmp_path):
    few = service.few_labels_demo().to_dict()
    assert results.seeds_result(few, tmp_path) is None  # no file: nothing to cite
    seeds_file(tmp_path, "seeds-2026-12-01-0900.json", few, [1.0, 2.0, 3.0])
    seeds_file(tmp_path, "seeds-2026-12-02-0900.json", few, [2.5, 3.5, 4.5])  # the newest
    seeds_file(tmp_path, "seeds-2026-12-03-0900.json", {**few, "epochs": 5}, [9.0, 9.0, 9.0])  # another config
    (tmp_path / "seeds-2026-12-04-0900.json").write_text("{not json")  # skipped, not an error
    found = results.seeds_result({**few, "device": "cpu"}, tmp_path)  # the device may differ
    assert found["file"] == "bench/results/seeds-2026-12-02-0900.json" and found["date"] == "2026-12-02"
    assert found["gains"] == pytest.approx([2.5, 3.5, 4.5]) and found["wall_s"] == 10.0
    assert results.seeds_result({**few, "temperature": 2.0}, tmp_path) is None


def grids_file(folder, name: str, config: dict, gains: dict) -> None:
    """A bench/grids.py file for one demo: gains maps (T, alpha) to (mean, std) in accuracy."""
    cells = [
        {"params": {"temperature": t, "alpha": a}, "seeds": [0, 1, 2], "gain_mean": m, "gain_std": sd}
        for (t, a), (m, sd) in gains.items()
    ]
    demo = {"config": config, "sweep": {"axes": {}, "seeds": [0, 1, 2], "cells": cells}}
    (folder / name).write_text(json.dumps({"date": "2026-12-02 11:06:00", "demos": {"demo": demo}}))


def test_a_demo_takes_t_and_alpha_from_the_cell_of_its_grid_that_pays_beyond_noise(tmp_path):
    few = service.RunConfig(**FEW_LABELS).to_dict()
    assert results.grid_result(few, tmp_path) is None
    grids_file(tmp_path, "grids-2026-12-01-0900.json", few, {(1.0, 0.5): (0.01, 0.002), (8.0, 0.9): (0.04, 0.003)})
    grid = results.grid_result({**few, "temperature": 8.0, "alpha": 0.9}, tmp_path)  # T and alpha aside
    assert grid["file"] == "bench/results/grids-2026-12-01-0900.json"
    assert results.paying_cell(grid["sweep"])["params"] == {"temperature": 8.0, "alpha": 0.9}
    quick = service.RunConfig().to_dict()
    grids_file(tmp_path, "grids-2026-12-02-0900.json", quick, {(1.0, 0.5): (0.001, 0.004), (4.0, 0.9): (-0.02, 0.01)})
    assert results.paying_cell(results.grid_result(quick, tmp_path)["sweep"]) is None  # within noise: none pays
    assert results.grid_result({**quick, "epochs": 3}, tmp_path) is None  # another config


def test_the_bundled_grids_set_the_demos_t_and_alpha():
    few, quick = service.few_labels_demo(), service.quick_demo()
    cell = service.paying_cell(few)
    assert cell is not None and cell["gain_mean"] > 0  # distillation pays with few labels
    assert {"temperature": few.temperature, "alpha": few.alpha} == cell["params"]
    best = service.best_cell(quick)  # the quick demo: its grid's best cell, paying or not
    assert {"temperature": quick.temperature, "alpha": quick.alpha} == best["params"]
    assert quick.replace(temperature=4.0, alpha=0.9) == service.RunConfig()  # all else: the defaults

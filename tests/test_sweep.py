"""Sweeps (kd/sweep.py, kd/sweep_run.py): a grid trained against one teacher, each (cell, seed)
stored as a run, from the CLI and the Python API."""

import json
import os
import subprocess
import sys

import pytest

from kd import sweep_run
from kd.config import RunConfig
from kd.errors import ConfigError
from kd.store import Store
from kd.sweep import Sweep
from kd.trainer import Trainer


def _kd(*args, runs_dir, check=True):
    env = {**os.environ, "KD_RUNS_DIR": str(runs_dir)}
    p = subprocess.run([sys.executable, "-m", "kd", *args], capture_output=True, text=True, env=env, timeout=600)
    if check:
        assert p.returncode == 0, p.stderr
    return p


@pytest.fixture(scope="module")
def cli_sweep(tmp_path_factory):
    runs = tmp_path_factory.mktemp("runs")
    p = _kd(
        "sweep", "--temperature", "1,4", "--alpha", "0.5,0.9", "--seeds", "0,1", "--epochs", "2", "--json",
        runs_dir=runs,
    )  # fmt: skip
    return runs, json.loads(p.stdout)


def test_the_cli_sweep_prints_every_cell_with_mean_and_std_over_seeds(cli_sweep):
    runs, out = cli_sweep
    assert out["status"] == "done" and out["axes"] == {"temperature": [1.0, 4.0], "alpha": [0.5, 0.9]}
    assert [c["params"] for c in out["cells"]] == [
        {"temperature": t, "alpha": a} for t in (1.0, 4.0) for a in (0.5, 0.9)
    ]
    store = Store(runs)
    for cell in out["cells"]:
        assert cell["seeds"] == [0, 1] and len(cell["run_ids"]) == 2
        gains = []
        for seed, run_id in zip(cell["seeds"], cell["run_ids"]):
            run = store.get(run_id)
            assert run.status == "done" and run.config["seed"] == seed
            assert {k: run.config[k] for k in cell["params"]} == cell["params"]
            gains.append(run.models["student"]["accuracy"] - run.models["baseline"]["accuracy"])
        assert cell["gain_mean"] == pytest.approx(sum(gains) / 2)
        assert cell["gain_std"] == pytest.approx(abs(gains[0] - gains[1]) / 2**0.5)
    assert out["baseline"]["accuracy_mean"] is not None and out["teacher"]["accuracy"] > 0.5


def test_sweeps_and_show_sweep_list_it_and_runs_lists_its_cells_not_it(cli_sweep):
    runs, out = cli_sweep
    listed = json.loads(_kd("sweeps", "--json", runs_dir=runs).stdout)
    assert [s["sweep_id"] for s in listed] == [out["sweep_id"]]
    assert json.loads(_kd("show-sweep", out["sweep_id"], "--json", runs_dir=runs).stdout) == out
    ids = {r["run_id"] for r in json.loads(_kd("runs", "--json", runs_dir=runs).stdout)}
    assert ids == {i for c in out["cells"] for i in c["run_ids"]}
    text = _kd("show-sweep", out["sweep_id"], runs_dir=runs).stdout
    assert "temperature" in text and "±" in text


def test_a_cell_trained_alone_with_the_sweeps_teacher_ends_as_in_the_sweep(cli_sweep):
    runs, out = cli_sweep
    run = Store(runs).get(out["cells"][3]["run_ids"][1])
    result = Trainer(RunConfig.from_dict(run.config)).run()  # its teacher: the sweep's, copied into the run
    for name in ("baseline", "student"):
        assert result.metrics[name]["accuracy"] == pytest.approx(run.models[name]["accuracy"], abs=0.003)


@pytest.mark.parametrize(
    "args, flag",
    [
        (["--epochs", "1,2"], "--epochs"),
        (["--temperature", "0,1"], "--temperature"),
        (["--seeds", "0,x"], "--seeds"),
        (["--alpha", "0.5,0.5"], "alpha"),
        (["--method", "at"], "--method"),
        (["--seeds", "0,-1"], "--seeds"),
        (["--max-group", "0"], "--max-group"),
        (["--dkd-beta", "2,8"], "--dkd-beta"),  # a knob of dkd, and the sweep's method is kd
        (["--method", "kd,dkd", "--dkd-beta", "2,-1"], "--dkd-beta"),
    ],
)
def test_bad_sweeps_are_refused_in_one_line_naming_the_flag(args, flag, tmp_path):
    p = _kd("sweep", *args, runs_dir=tmp_path, check=False)
    assert p.returncode == 2 and flag in p.stderr and "Traceback" not in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1
    assert Store(tmp_path).runs() == [] and Store(tmp_path).runs(sweeps=True) == []


def test_an_axis_that_is_not_one_is_refused():
    with pytest.raises(ConfigError, match="cannot be swept"):
        Sweep(RunConfig(), {"epochs": [1, 2]})


def test_lockstep_and_sequential_sweeps_agree_and_a_stopped_sweep_resumes(tmp_path):
    """The same grid trained both ways ends with the same accuracies; a sweep stopped after its
    first group keeps that group's runs and, resumed, trains only the rest."""
    grid = dict(axes={"temperature": [1.0, 4.0]}, seeds=(0, 1), max_group=2)
    base = RunConfig(epochs=2)
    store = Store(tmp_path)
    seq_id, status = sweep_run.train_new(store, Sweep(base, mode="sequential", **grid))
    assert status == "done"

    def stop_after_first_cell(e):
        if e.get("kind") == "cell" and e.get("run_id"):
            store.request_stop(store.runs(sweeps=True)[0].id)  # the newest sweep: this one

    sweep_id, status = sweep_run.train_new(store, Sweep(base, **grid), progress=stop_after_first_cell)
    assert status == "stopped"
    first = sweep_run.result(store, sweep_id)
    kept = {i for c in first["cells"] for i in c["run_ids"]}
    assert 0 < len(kept) < 4
    store.update(sweep_id, stop_requested=0)
    from kd import jobs

    lease = jobs.claim(store, sweep_id, jobs.queued_or_resumable, requeue=True, verb="resumed")
    assert sweep_run.run_owned(store, sweep_id, lease) == "done"
    done = sweep_run.result(store, sweep_id)
    assert kept <= {i for c in done["cells"] for i in c["run_ids"]}
    assert all(len(c["seeds"]) == 2 for c in done["cells"])
    seq = sweep_run.result(store, seq_id)
    for a, b in zip(done["cells"], seq["cells"]):
        assert a["accuracy_mean"] == pytest.approx(b["accuracy_mean"], abs=0.003)


def test_a_sweep_killed_mid_way_resumes_keeping_the_cells_it_stored(tmp_path):
    """kill -9 of a sweep's worker after its first group: the sweep shows as interrupted, Resume
    goes on in a new worker, the cells stored before keep their runs, and every cell ends stored
    exactly once."""
    import signal
    import time

    from kd import jobs, lease

    store = Store(tmp_path)
    sweep = Sweep(RunConfig(epochs=40), {"temperature": [1.0, 2.0, 4.0, 8.0]}, (0,), max_group=1)
    sweep_id = sweep_run.start(store, sweep)
    deadline = time.time() + 300
    while not store.sweep_runs(sweep_id) and time.time() < deadline:
        time.sleep(0.05)
    first = dict(store.sweep_runs(sweep_id))
    assert first, (tmp_path / sweep_id / "worker.log").read_text()
    os.kill(store.get(sweep_id).pid, signal.SIGKILL)
    deadline = time.time() + 60
    while lease.state(store.get(sweep_id)) != "interrupted" and time.time() < deadline:
        time.sleep(0.2)
    assert lease.state(store.get(sweep_id)) == "interrupted"
    jobs.resume(sweep_id, store)
    deadline = time.time() + 300
    while lease.state(store.get(sweep_id)) in ("queued", "running") and time.time() < deadline:
        time.sleep(0.2)
    assert store.get(sweep_id).status == "done", (tmp_path / sweep_id / "worker.log").read_text()
    result = sweep_run.result(store, sweep_id)
    assert all(len(c["run_ids"]) == 1 for c in result["cells"])
    done = {(c, s): r for (c, s), r in store.sweep_runs(sweep_id).items()}
    for key, run_id in first.items():
        if store.get(run_id) is not None:  # stored whole before the kill: kept as it was
            assert done[key] == run_id
    assert len(store.runs()) == 4  # a half-written run of the killed worker was deleted


def test_groups_split_to_fit_the_memory_budget_and_the_plan_says_so(tmp_path, monkeypatch):
    from kd.sweep import SweepTrainer, plan

    sweep = Sweep(RunConfig(epochs=1), {"temperature": [1.0, 2.0, 4.0]}, (0, 1))
    whole = {g["stage"]: g for g in plan(sweep)}
    assert whole["student"]["students"] == 6 and whole["student"]["group"] == 64
    each = whole["student"]["mb_each"]
    monkeypatch.setenv("KD_GROUP_MB", str(2.5 * each))  # room for two students a group
    split = {g["stage"]: g for g in plan(sweep)}
    assert split["student"]["group"] == 2 and split["baseline"]["group"] == 2
    trainer = SweepTrainer(sweep)
    assert trainer.run() == "done"
    assert [stage for stage, _ in trainer.timings] == ["baseline"] + ["student"] * 3  # 2 alone; 6 in 3 groups
    p = _kd("sweep", "--temperature", "1,2,4", "--seeds", "0,1", "--epochs", "1", runs_dir=tmp_path)
    assert "6 mlp-128 distilled students (kd): in 3 lockstep groups of 2" in p.stderr


def test_a_knob_of_one_method_sweeps_beside_another_method_and_equal_cells_train_once(tmp_path):
    """kd against dkd at two dkd_beta: the kd cells ignore the knob, share one config and one
    training; the dkd cells each have theirs."""
    store = Store(tmp_path)
    sweep = Sweep(RunConfig(epochs=1), {"method": ["kd", "dkd"], "dkd_beta": [2.0, 8.0]})
    sweep_id, status = sweep_run.train_new(store, sweep)
    assert status == "done"
    cells = sweep_run.result(store, sweep_id)["cells"]
    runs = [store.get(c["run_ids"][0]) for c in cells]
    assert [r.config["method"] for r in runs] == ["kd", "kd", "dkd", "dkd"]
    assert runs[0].config["options"] is None and runs[1].config["options"] is None
    assert runs[0].models["student"] == runs[1].models["student"]  # one training, stored for both cells
    assert [r.config["options"]["dkd_beta"] for r in runs[2:]] == [2.0, 8.0]

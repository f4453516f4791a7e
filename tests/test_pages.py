"""Every page renders without an exception (AppTest, no browser): real tiny runs where they are
fast, events written straight into the store where a page only draws them."""

import math
import re
import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from kd import jobs, runner
from kd.config import RunConfig
from kd.errors import KDError
from kd.store import Store
from pages.common import plain

APP = str(Path(__file__).resolve().parents[1] / "app.py")
TINY = RunConfig(epochs=2, teacher_epochs=2, batch_size=128, device="cpu")


def page(path: str | None = None, **query) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60)
    for k, v in query.items():
        at.query_params[k] = v
    at.run()
    if path:
        at.switch_page(path).run()
    assert not at.exception, at.exception
    return at


@pytest.fixture
def finished_run():
    store = Store()
    run_id, _ = runner.train_new(store, TINY)
    return run_id


def test_home_explains_and_offers_the_quick_demo():
    at = page()
    assert at.title[0].value == "Distill Lab"
    assert any(b.label == "Run the quick demo" for b in at.button)


def test_the_few_labels_demo_starts_a_run_whose_students_see_5_percent(runs_dir):
    at = page()
    next(b for b in at.button if b.label == "Run the few-labels demo").click().run()
    assert not at.exception
    (run,) = Store().runs()
    assert run.config["student_fraction"] == 0.05 and run.config["epochs"] == 60
    live = page("pages/live.py", run=run.id)
    assert any("students on 5%" in m.value for m in live.markdown)
    jobs.stop(run.id)


def test_train_page_offers_models_that_fit_and_shows_the_loss_with_its_numbers():
    at = page("pages/train.py")
    teacher = next(s for s in at.selectbox if s.label == "Teacher")
    assert teacher.value == "mlp-512-256" and "lenet5" not in teacher.options[0]
    assert not any(o.startswith("lenet5 ") for o in teacher.options)  # lenet5 cannot take 8x8 digits
    assert any("0.90" in x.value and "4^2" in x.value for x in at.latex)
    next(s for s in at.slider if s.label == "Temperature T").set_value(8.0).run()
    assert any("8^2" in x.value for x in at.latex)
    assert any(b.label == "Start training" for b in at.button)


def test_train_page_starts_a_real_run_in_the_background(runs_dir):
    at = page("pages/train.py")
    next(n for n in at.number_input if n.label == "Epochs").set_value(1)
    next(n for n in at.number_input if n.label == "Teacher epochs").set_value(1)
    next(r for r in at.radio if r.label == "Seeds").set_value(1)  # one run, not a sweep
    next(b for b in at.button if b.label == "Start training").click().run()
    assert not at.exception
    store = Store()
    (run,) = store.runs()
    assert run.config["epochs"] == 1
    deadline = time.time() + 120
    while store.get(run.id).status in ("queued", "running") and time.time() < deadline:
        time.sleep(0.5)
    assert store.get(run.id).status == "done", (runs_dir / run.id / "worker.log").read_text()


def _labels(at) -> set[str]:
    kinds = (at.number_input, at.selectbox, at.slider, at.select_slider, at.text_input, at.radio, at.checkbox)
    return {w.label for kind in kinds for w in kind}


def test_every_field_the_cli_accepts_can_be_set_on_the_train_page(runs_dir, tmp_path):
    """One declaration per field (kd/config.py) makes the flag and the widget: none is missing.
    Before, the page lacked weight decay and the validation share, and capped epochs at 1,000."""
    from kd.cli import TRAIN_FLAGS
    from kd.config import knobs
    from tests.test_data import _make_folder

    described = knobs()
    at = page("pages/train.py")
    shown = _labels(at)
    at.selectbox[0].set_value("mnist").run()  # a data set read from a folder: the folder is asked
    shown |= _labels(at)
    at.selectbox[0].set_value("my data on this machine…").run()
    table = tmp_path / "t.csv"
    table.write_text("x,y\n" + "".join(f"{i},{i % 2}\n" for i in range(20)))
    for path in (_make_folder(tmp_path / "pets"), table):  # images: their size is asked; a table: its label
        next(t for t in at.text_input if t.label == "Folder or file").input(str(path)).run()
        shown |= _labels(at)
    missing = [flag for flag, (name, _) in TRAIN_FLAGS.items() if described[name].label not in shown]
    assert not missing, missing
    assert set(described) - {name for name, _ in TRAIN_FLAGS.values()} == {"options"}  # a flag per knob instead
    from kd.config import method_options

    at = page("pages/train.py")
    for name, (opt, owners) in method_options().items():  # each method's own knobs, once it is chosen
        next(s for s in at.selectbox if s.label == "Method").set_value(owners[0]).run()
        assert opt.knob.label in _labels(at), name


def test_a_folder_of_images_on_this_machine_can_be_named_on_the_train_page(runs_dir, tmp_path):
    """The CLI's folder:PATH, on the page: the classes are read from the folder before anything starts."""
    from tests.test_data import _make_folder

    folder = _make_folder(tmp_path / "pets")
    at = page("pages/train.py")
    at.selectbox[0].set_value("my data on this machine…").run()
    next(t for t in at.text_input if t.label == "Folder or file").input(str(folder)).run()
    assert "3 classes" in " ".join(c.value for c in at.caption) and not at.error
    for label in ("Epochs", "Teacher epochs"):
        next(n for n in at.number_input if n.label == label).set_value(1)
    at.run()
    next(r for r in at.radio if r.label == "Seeds").set_value(1)  # one run, not a sweep
    next(b for b in at.button if b.label == "Start training").click().run()
    assert not at.exception and not at.error
    (run,) = Store().runs()
    assert run.config["dataset"] == f"folder:{folder}"


def test_a_table_or_signals_on_this_machine_are_shown_before_training_and_train_from_the_page(runs_dir, tmp_path):
    """A CSV named on the Train page: its label column is picked from its columns, missing values
    are refused until filled, the class counts of each split and its first rows are shown; it
    trains from the page. An npz of signals: 1-D models offered, a few signals drawn."""
    from tests.test_owndata import signals, table

    df = table()
    df.loc[3, "b"] = None
    df.to_csv(tmp_path / "lab.csv", index=False)
    at = page("pages/train.py")
    at.selectbox[0].set_value("my data on this machine…").run()
    next(t for t in at.text_input if t.label == "Folder or file").input(str(tmp_path / "lab.csv")).run()
    assert at.selectbox(key="train_label").value == "outcome"  # the last column, of those in the file
    assert plain("column 'b' is missing in 1 row") in at.error[0].value  # refused, naming the column ...
    at.selectbox(key="setting_fill_missing").set_value("mean").run()  # ... until filled
    assert not at.error and not at.exception
    counts = at.dataframe[0].value
    assert list(counts.columns) == ["train + val", "test"] and counts.loc["all classes"].sum() == 300
    assert list(at.dataframe[1].value.columns) == ["a", "b", "colour", "outcome"]  # the first rows, as in the file
    for label in ("Epochs", "Teacher epochs"):
        next(n for n in at.number_input if n.label == label).set_value(2)
    next(r for r in at.radio if r.label == "Seeds").set_value(1)
    next(b for b in at.button if b.label == "Start training").click().run()
    assert not at.exception and not at.error
    (run,) = Store().runs()
    assert run.config["fill_missing"] == "mean" and run.config["label"] == "outcome"
    deadline = time.time() + 120
    while Store().get(run.id).status in ("queued", "running") and time.time() < deadline:
        time.sleep(0.5)
    assert Store().get(run.id).status == "done", (runs_dir / run.id / "worker.log").read_text()

    at = page("pages/train.py")
    at.selectbox[0].set_value("my data on this machine…").run()
    npz = signals(tmp_path / "vibration.npz")
    next(t for t in at.text_input if t.label == "Folder or file").input(str(npz)).run()
    assert not at.error and len(at.get("plotly_chart")) == 1  # a few signals drawn
    assert any(o.startswith("cnn1d-x1 ") for o in at.selectbox(key="train_teacher").options)


def test_the_train_page_passes_every_setting_to_the_run(runs_dir):
    at = page("pages/train.py")
    values = {"Epochs": 2, "Teacher epochs": 1, "Weight decay": 0.01, "Learning rate": 0.002, "Seed": 5}
    for n in at.number_input:
        if n.label in values:
            n.set_value(values[n.label])
    next(s for s in at.selectbox if s.label == "Validation share").set_value(0.2)
    next(s for s in at.selectbox if s.label == "Optimizer").set_value("sgd")
    at.run()
    next(r for r in at.radio if r.label == "Seeds").set_value(1)  # one run, not a sweep
    next(b for b in at.button if b.label == "Start training").click().run()
    assert not at.exception
    (run,) = Store().runs()
    c = run.config
    assert (c["epochs"], c["teacher_epochs"], c["weight_decay"], c["lr"], c["seed"]) == (2, 1, 0.01, 0.002, 5)
    assert (c["val_fraction"], c["optimizer"]) == (0.2, "sgd")
    jobs.stop(run.id)


def test_live_page_draws_faked_events():
    store = Store()
    run_id = store.create_run(TINY.to_dict(), status="running")
    store.update(run_id, heartbeat=time.time())
    events = [
        {"kind": "stage", "stage": "teacher", "status": "started", "epochs": 2, "steps_per_epoch": 10, "params": 1}
    ]
    events += [
        {
            "kind": "step",
            "stage": "teacher",
            "epoch": 1 + i // 10,
            "step": i + 1,
            "total_steps": 20,
            "loss": 2.0 / (i + 1),
            "loss_ce": 2.0 / (i + 1),
            "lr": 1e-3,
            "samples_per_s": 1000.0,
        }
        for i in range(15)
    ]
    events += [
        {
            "kind": "epoch",
            "stage": "teacher",
            "epoch": 1,
            "epochs": 2,
            "step": 10,
            "train_acc": 0.8,
            "val_acc": 0.85,
            "val_loss": 0.5,
            "seconds": 1.0,
        }
    ]
    store.append_events(run_id, events)
    at = page(None, run=run_id)
    at.switch_page("pages/live.py").run()
    assert not at.exception
    assert "75 %" in at.get("progress")[0].proto.text  # teacher: step 15 of 20
    assert len(at.get("plotly_chart")) == 2
    assert any(b.label == "Stop run" for b in at.button)
    next(b for b in at.button if b.label == "Stop run").click().run()
    assert store.get(run_id).stop_requested


def test_live_bars_charts_and_counter_show_one_snapshot_redrawn_every_second():
    """The charts (the costly part for the server and the browser) are rebuilt at most every
    CHARTS_EVERY_S (one second) while the run trains; the progress bars and the event counter
    show the same events as the charts, never newer ones; every event once the run has ended."""
    store = Store()
    run_id = store.create_run(TINY.to_dict(), status="running")
    step = lambda i: {
        "kind": "step",
        "stage": "teacher",
        "epoch": 1,
        "step": i,
        "total_steps": 100,
        "loss": 1.0 / i,
        "loss_ce": 1.0 / i,
        "lr": 1e-3,
        "samples_per_s": 1000.0,
    }
    store.append_events(
        run_id,
        [
            {
                "kind": "stage",
                "stage": "teacher",
                "status": "started",
                "epochs": 1,
                "steps_per_epoch": 100,
                "params": 1,
            },
            step(1),
            step(2),
        ],
    )
    at = page("pages/live.py", run=run_id)
    spec = lambda: at.get("plotly_chart")[0].proto.spec
    counter = lambda: next(c.value for c in at.caption if "events" in c.value)
    bar = lambda: at.get("progress")[0].proto.value
    first, first_count, first_bar = spec(), counter(), bar()
    assert "3 events" in first_count
    store.append_events(run_id, [step(3), step(4)])
    at.run()
    assert (spec(), counter(), bar()) == (first, first_count, first_bar)  # within the second: as drawn
    time.sleep(1.0)  # pages/live.py's CHARTS_EVERY_S
    at.run()
    assert spec() != first and "5 events" in counter() and bar() > first_bar  # all three at once
    second = spec()
    store.append_events(run_id, [step(5)])
    store.update(run_id, status="done")
    at.run()
    assert not at.exception and spec() != second  # the run ended: every event is drawn


def test_stop_on_a_store_held_by_a_stuck_writer_says_so_and_the_page_lives_on(runs_dir, monkeypatch):
    import sqlite3

    monkeypatch.setattr(Store, "busy_timeout_s", 0.2)
    store = Store()
    run_id = store.create_run(TINY.to_dict(), status="running")
    store.update(run_id, heartbeat=time.time())
    at = page("pages/live.py", run=run_id)
    other = sqlite3.connect(runs_dir / "runs.db", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        next(b for b in at.button if b.label == "Stop run").click().run()
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert not at.exception
    assert any("stayed busy" in e.value for e in at.error)
    assert not store.get(run_id).stop_requested


def test_results_page_compares_three_models(finished_run):
    at = page(None, run=finished_run)
    at.switch_page("pages/results.py").run()
    assert not at.exception
    said = [e.value for kind in (at.success, at.info, at.warning) for e in kind if "same student" in e.value]
    assert len(said) == 1 and "noise of ±" in said[0]  # one headline, whatever its tone
    table = at.dataframe[0].value
    assert list(table["model"]) == ["teacher", "student alone", "distilled student"]
    assert len(at.get("plotly_chart")) >= 5  # comparison, 3 confusion matrices, reliability


def test_results_page_headline_follows_the_gain_against_the_noise(finished_run):
    """The real run's results, with the two students' accuracies set so that distillation lost,
    made no clear difference, and paid (the page reads only the stored results): one headline
    in the matching tone, and the why-and-what-next note only where it did not pay."""
    from kd import metrics

    store = Store()
    results = store.get(finished_run).results
    results["models"]["baseline"]["accuracy"] = 0.80
    cases = ((0.70, "warning", "Distillation cost accuracy: -10.00 points"), (0.81, "info", "No clear difference"))
    cases += ((0.90, "success", "Distillation paid: +10.00 points"),)
    for distilled, tone, words in cases:
        results["models"]["student"]["accuracy"] = distilled
        results["summary"] = metrics.run_summary(results["models"])
        store.update(finished_run, results=results)
        at = page(None, run=finished_run)
        at.switch_page("pages/results.py").run()
        assert not at.exception
        said = [e.value for e in getattr(at, tone)]
        assert len(said) == 1 and said[0].startswith(words) and "noise of ±" in said[0], said
        note = [c.value for c in at.caption if "A sweep of T and α" in c.value]
        assert len(note) == (tone != "success")
        if note:
            assert note[0].count(". ") <= 1  # two sentences at most


def test_results_page_with_an_unknown_run_id_shows_only_the_error_and_a_way_to_runs(finished_run):
    for name in ("pages/results.py", "pages/live.py"):
        at = page(None, run="../../etc/passwd")
        at.switch_page(name).run()
        assert not at.exception and any("No such run" in e.value for e in at.error)
        assert not at.selectbox and not at.dataframe and not at.get("plotly_chart")  # no other run's results
        assert at.query_params["run"] == "../../etc/passwd"  # the URL left as it was


def test_runs_page_lists_real_runs_by_name(finished_run):
    at = page("pages/runs.py")
    table = at.dataframe[0].value
    assert list(table.columns[:3]) == ["compare", "name", "gain (points)"]  # it leads with name and gain
    assert list(table["run"]) == [finished_run] and table["status"][0] == "done"
    assert table["name"][0] == "digits · kd T=4 α=0.9"  # alone: its method and the numbers it uses
    assert 0 < table["distilled acc %"][0] <= 100


def test_runs_are_named_by_what_sets_them_apart_and_renamed(finished_run):
    from kd import service

    store = Store()
    second, _ = runner.train_new(store, TINY.replace(seed=1, temperature=2.0, lr=0.01))
    at = page("pages/runs.py")
    table = at.dataframe[0].value.set_index("run")
    # Named by the fewest settings that tell the runs apart (T does); the table shows every one that differs.
    assert table.loc[second, "name"] == "digits · T=2" and table.loc[finished_run, "name"] == "digits · T=4"
    assert {"seed", "temperature", "lr"} <= set(table.columns) and "alpha" not in table.columns  # alpha is one
    service.rename(second, "  my   best  ")
    assert store.get(second).name == "my best"
    with pytest.raises(KDError, match="at most 80"):
        service.rename(second, "x" * 81)
    at = page("pages/runs.py")
    assert at.dataframe[0].value.set_index("run").loc[second, "name"] == "my best"
    service.rename(second, "")  # back to the made name
    assert store.get(second).name is None


def test_runs_page_groups_its_runs_by_a_setting(finished_run):
    store = Store()
    for seed in (1, 2):
        runner.train_new(store, TINY.replace(seed=seed, temperature=2.0))
    at = page("pages/runs.py")
    runs = at.dataframe[0].value
    at.selectbox(key="runs_group_by").select("temperature").run()
    assert not at.exception
    groups, table = at.dataframe[0].value, at.dataframe[1].value  # the summary above the runs
    assert table.equals(runs)
    assert list(groups["temperature"]) == ["2.0", "4.0"] and list(groups["runs"]) == [2, 1]
    twos = runs[runs["temperature"] == 2.0]
    assert groups["mean gain (points)"][0] == pytest.approx(twos["gain (points)"].mean(), abs=0.01)
    assert groups["best run"][0] == twos.loc[twos["gain (points)"].idxmax(), "name"]
    assert groups["gain std"][1] is None or math.isnan(groups["gain std"][1])  # one run: no spread


def test_runs_page_when_empty():
    at = page("pages/runs.py")
    assert "No runs yet" in at.info[0].value


def test_temperature_explorer(finished_run):
    at = page("pages/temperature.py")
    assert len(at.get("plotly_chart")) == 2
    next(s for s in at.slider if s.label == "Temperature T").set_value(12.0).run()
    assert not at.exception


def test_the_deploy_panel_exports_checks_and_offers_each_format(finished_run):
    at = page(None, run=finished_run)
    at.switch_page("pages/results.py").run()
    assert not at.get("download_button")  # nothing exported yet
    next(b for b in at.button if b.label == "Export ONNX").click().run()
    assert not at.exception and not at.error
    said = [m.value for m in at.success if "ONNX" in m.value]
    assert len(said) == 1 and "computes what PyTorch computes on 360 test examples" in said[0]
    assert "agrees on 100.00 %" in said[0]
    assert [b.label for b in at.get("download_button")] == ["Download", "Download int8"]  # the file and its int8 copy
    assert any("int8 copy" in m.value and "in fp32" in m.value for m in at.info)
    latency = at.dataframe[-1].value  # ONNX in onnxruntime beside PyTorch, and the int8 copy
    assert list(latency["runtime"]) == ["pytorch", "onnxruntime", "int8 onnxruntime"]
    at.radio(key="deploy_model").set_value("teacher").run()  # another model: its own files
    assert not at.get("download_button")
    next(b for b in at.button if b.label == "Export safetensors weights").click().run()
    assert len(at.get("download_button")) == 1 and Store().get(finished_run).results["exports"].keys() == {
        "student",
        "teacher",
    }


def test_results_page_draws_decision_boundaries_for_a_2d_set():
    store = Store()
    cfg = RunConfig(dataset="moons", epochs=2, teacher_epochs=2, batch_size=128, device="cpu")
    run_id, _ = runner.train_new(store, cfg)
    at = page(None, run=run_id)
    at.switch_page("pages/results.py").run()
    assert not at.exception
    assert any(s.value == "Decision boundaries" for s in at.subheader)
    assert len(at.get("plotly_chart")) >= 6


def test_a_run_started_from_the_cli_shows_up_live(runs_dir):
    import subprocess
    import sys

    proc = subprocess.Popen(
        [sys.executable, "-m", "kd", "train", "--epochs", "40", "--teacher-epochs", "40", "--device", "cpu", "--json"],
        cwd=Path(APP).parent,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        store, deadline = Store(), time.time() + 60
        while time.time() < deadline and not (store.runs() and store.events(store.runs()[0].id)):
            time.sleep(0.2)
        (run,) = store.runs()
        at = page(None, run=run.id)
        at.switch_page("pages/live.py").run()
        assert not at.exception
        assert "**running**" in at.markdown[0].value
        assert any(b.label == "Stop run" for b in at.button)
        next(b for b in at.button if b.label == "Stop run").click().run()  # stop it from the page
        assert proc.wait(60) == 1  # the CLI ends with "stopped" (exit code 1, not done)
        assert store.get(run.id).status == "stopped"
    finally:
        proc.kill()


def test_runs_page_restores_a_compare_link_and_asks_before_deleting(finished_run):
    store = Store()
    second, _ = runner.train_new(store, TINY.replace(seed=1))
    third, _ = runner.train_new(store, TINY.replace(seed=2))
    at = page(None, compare=f"{finished_run},{second}")
    at.switch_page("pages/runs.py").run()
    assert not at.exception
    table = at.dataframe[0].value.set_index("run")
    assert table["compare"].to_dict() == {finished_run: True, second: True, third: False}  # the link's ticks
    assert any("2 runs chosen" in s.value for s in at.subheader)
    metrics = at.dataframe[1].value  # the comparison table: 3 models x 2 runs, by name
    assert len(metrics) == 6 and set(metrics["name"]) == {"digits · seed=0", "digits · seed=1"}
    overlay = at.get("plotly_chart")[0]
    assert overlay is not None
    next(b for b in at.button if b.label.startswith("Delete the 2 ticked")).click().run()
    assert not at.exception and len(store.runs()) == 3  # it asks first: nothing deleted yet
    assert any("Delete 2 runs?" in m.value for m in at.markdown) and at.button(key="delete_yes")


def _wait(predicate, timeout: float):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"gave up after {timeout} s")


def test_an_interrupted_run_is_resumed_from_the_live_page(runs_dir):
    import os
    import signal

    from kd import jobs

    store = Store()
    cfg = TINY.replace(epochs=12, teacher_epochs=12)
    run_id = jobs.start(cfg, store)
    _wait(lambda: store.checkpoint_path(run_id).exists(), 60)
    os.kill(store.get(run_id).pid, signal.SIGKILL)
    _wait(lambda: jobs.status(store.get(run_id)) == "interrupted", 15)
    at = page(None, run=run_id)
    at.switch_page("pages/live.py").run()
    assert "**interrupted**" in at.markdown[0].value
    assert any("Resume goes on from its last finished epoch" in w.value for w in at.warning)
    next(b for b in at.button if b.label == "Resume").click().run()
    assert not at.exception
    _wait(lambda: store.get(run_id).status == "done", 120)
    run = store.get(run_id)
    assert run.resumed == 1
    epochs = [(e["stage"], e["epoch"]) for _, e in store.events(run_id) if e["kind"] == "epoch"]
    assert epochs == [(s, k) for s in ("teacher", "baseline", "student") for k in range(1, 13)]


def test_a_stopped_run_shows_what_it_had_in_results(runs_dir):
    from kd import jobs

    store = Store()
    run_id = jobs.start(TINY.replace(epochs=200, teacher_epochs=200), store)
    _wait(lambda: any(e["kind"] == "epoch" for _, e in store.events(run_id)), 60)
    jobs.stop(run_id, store)
    _wait(lambda: store.get(run_id).status == "stopped", 30)
    at = page(None, run=run_id)
    at.switch_page("pages/results.py").run()
    assert any("This run stopped" in w.value for w in at.warning)
    (table,) = [d.value for d in at.dataframe]
    assert list(table["model"]) == ["teacher"] and table.iloc[0, 1] > 0
    at.switch_page("pages/live.py").run()
    assert any(b.label == "Resume" for b in at.button)  # a stopped run can go on too


PAGES = re.findall(r'st\.Page\("(pages/\w+\.py)"', Path(APP).read_text())  # every page app.py routes to


@pytest.mark.parametrize("path", [None if p == "pages/home.py" else p for p in PAGES])
def test_a_damaged_store_is_one_message_on_every_page(runs_dir, path):
    """Before: a traceback on Live, Results, Runs and Temperature."""
    runs_dir.mkdir(parents=True)
    (runs_dir / "runs.db").write_bytes(b"this is not a database, " * 200)
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    if path:
        at.switch_page(path).run()
    assert not at.exception, at.exception
    if True:  # Home and Train too: said before anything is filled in
        assert any("is damaged" in e.value and "move the file aside" in e.value for e in at.error), [
            e.value for e in at.error
        ]


def test_text_from_the_url_is_shown_as_text_never_as_markdown():
    """Before: ?run=[x](https://evil.example) made a link on the page, and ![](url) fetched an image."""
    evil = (
        "[click me](https://evil.example/steal) ![x](https://evil.example/pixel.png) **bold** :red[red] "
        "www.evil.example me@evil.example"
    )
    at = page(None, run=evil)
    at.switch_page("pages/results.py").run()
    errors = [e.value for e in at.error]
    assert errors and all("](" not in e and "**" not in e and ":red[" not in e for e in errors), errors
    # escaped, and the bare addresses the renderer would link on its own are broken by a word joiner
    j = plain.__globals__["WORD_JOINER"]
    assert any(
        rf"\[click me\]\(https\:{j}//evil\.example/steal\)" in e and f"www{j}\\." in e and f"me{j}@evil" in e
        for e in errors
    ), errors


def test_a_train_link_reopens_its_setup_and_the_form_keeps_its_last_values(runs_dir):
    """The Train page writes its settings that differ from the defaults into the URL; a link with
    them opens the form set up the same way (a method's own knob included); a setting a link gets
    wrong is named and left at its default; after a visit to another page the form is as it was."""
    link = {"method": "dkd", "temperature": "2", "alpha": "0.7", "epochs": "7", "o.dkd_beta": "4", "seeds": "1"}
    at = page(None, **link)
    at.switch_page("pages/train.py").run()
    assert not at.exception and not at.warning
    assert at.selectbox(key="train_method").value == "dkd" and at.slider(key="train_temperature").value == 2.0
    assert at.number_input(key="setting_epochs").value == 7 and at.number_input(key="setting_dkd_beta").value == 4.0
    assert at.radio(key="train_seeds_radio").value == 1
    assert {k: at.query_params[k] for k in link} == link  # the URL says the same setup (dkd shows no alpha: kept)

    at.slider(key="train_temperature").set_value(3.0).run()
    assert at.query_params["temperature"] == "3"
    at.switch_page("pages/runs.py").run()
    at.switch_page("pages/train.py").run()
    assert at.slider(key="train_temperature").value == 3.0 and at.selectbox(key="train_method").value == "dkd"

    bad = page(None, temperature="-1", nonsense="1", teacher_checkpoint="/etc/passwd")
    bad.switch_page("pages/train.py").run()
    assert not bad.exception
    said = bad.warning[0].value
    assert "temperature" in said and "nonsense" in said and plain("teacher_checkpoint") in said
    assert bad.slider(key="train_temperature").value == RunConfig().temperature


def test_train_page_estimates_the_time_from_an_earlier_run_of_the_same_setup(runs_dir):
    from kd import service

    at = page("pages/train.py")
    assert any("No estimate of the time yet" in c.value for c in at.caption)
    store = Store()
    run_id, _ = runner.train_new(store, RunConfig(epochs=2, teacher_epochs=2, device="cpu"))
    done = store.get(run_id).models
    per_epoch = sum(done[m]["train_seconds"] / done[m]["epochs"] for m in ("teacher", "baseline", "student"))
    seconds, like = service.estimate_seconds(RunConfig())  # the defaults: 10 epochs each
    assert like.id == run_id and seconds == pytest.approx(10 * per_epoch)
    assert service.estimate_seconds(RunConfig(batch_size=128)) is None  # another batch size: no guess
    at = page("pages/train.py")
    said = [c.value for c in at.caption if "of training, judged from" in c.value]
    assert len(said) == 1 and run_id in said[0]
    assert said[0].startswith("About ") or said[0].startswith("Under a second")  # never "About 0 s"

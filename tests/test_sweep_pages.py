"""The Sweep and Pareto pages (AppTest): a sweep started from the page trains in its own
process and its heatmap, best cell and cells' runs show; the Pareto view draws every model."""

import time
from pathlib import Path

from streamlit.testing.v1 import AppTest

from kd import sweep_run
from kd.config import RunConfig
from kd.store import Store
from kd.sweep import Sweep

APP = str(Path(__file__).resolve().parents[1] / "app.py")


def page(path: str, **query) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60)
    for k, v in query.items():
        at.query_params[k] = v
    at.run()
    at.switch_page(path).run()
    assert not at.exception, at.exception
    return at


def _wait(store: Store, run_id: str, runs_dir) -> None:
    deadline = time.time() + 300
    while store.get(run_id).status in ("queued", "running") and time.time() < deadline:
        time.sleep(0.5)
    assert store.get(run_id).status == "done", (runs_dir / run_id / "worker.log").read_text()


def test_the_sweep_page_starts_a_grid_and_shows_its_heatmap_best_cell_and_runs(runs_dir):
    at = page("pages/sweep.py")
    next(m for m in at.multiselect if m.label == "Temperatures T").set_value([1.0, 4.0])
    next(m for m in at.multiselect if m.label.startswith("alpha")).set_value([0.5, 0.9])
    next(r for r in at.radio if r.label == "Seeds").set_value(1)
    next(n for n in at.number_input if n.label == "Epochs").set_value(2)
    next(b for b in at.button if b.label == "Start sweep").click().run()
    assert not at.exception, at.exception
    store = Store()
    (sweep,) = store.runs(sweeps=True)
    assert Store().sweep_spec(sweep.id)["axes"] == {"temperature": [1.0, 4.0], "alpha": [0.5, 0.9]}
    _wait(store, sweep.id, runs_dir)
    at = page("pages/sweep.py", sweep=sweep.id)
    shown = " ".join(x.value for x in [*at.success, *at.warning])
    assert "Best:" in shown or "No cell beats the student alone" in shown
    assert len(at.get("plotly_chart")) >= 3  # heatmap, the best cell's seeds, its curves
    runs = {r.id for r in store.runs()}
    assert len(runs) == 4
    assert any("Open as a run" in str(link.proto) for link in at.get("page_link"))


def test_an_unknown_sweep_id_says_so_and_shows_no_other_sweep():
    store = Store()
    sweep_run.train_new(store, Sweep(RunConfig(epochs=1), {"temperature": [1.0, 4.0]}))
    at = page("pages/sweep.py", sweep="nonsense")
    assert any("No such sweep" in e.value for e in at.error)
    assert not at.get("plotly_chart")


def test_the_pareto_page_draws_every_model_and_the_frontier():
    at = page("pages/pareto.py")
    assert any("No finished runs yet" in i.value for i in at.info)
    sweep_run.train_new(Store(), Sweep(RunConfig(epochs=1), {"temperature": [1.0, 2.0, 4.0]}))
    at = page("pages/pareto.py")
    (chart,) = at.get("plotly_chart")
    spec = chart.proto.spec
    assert "frontier" in spec and "distilled student" in spec and "teacher" in spec


def test_three_seeds_from_the_train_page_train_one_teacher_and_results_show_their_spread(runs_dir):
    at = page("pages/train.py")
    seeds = next(r for r in at.radio if r.label == "Seeds")
    assert seeds.value == 3  # the default pair costs less than twice one seed with three
    for label in ("Epochs", "Teacher epochs"):
        next(n for n in at.number_input if n.label == label).set_value(2)
    next(b for b in at.button if b.label == "Start training").click().run()
    assert not at.exception, at.exception
    store = Store()
    (sweep,) = store.runs(sweeps=True)
    assert store.sweep_spec(sweep.id)["axes"] == {} and store.sweep_spec(sweep.id)["seeds"] == [0, 1, 2]
    _wait(store, sweep.id, runs_dir)
    runs = store.runs()
    assert sorted(r.config["seed"] for r in runs) == [0, 1, 2]
    teachers = {r.models["teacher"]["accuracy"] for r in runs}
    assert len(teachers) == 1  # one teacher for the three seeds
    at = page("pages/results.py", run=runs[0].id)
    assert any(h.value == "Over 3 seeds" for h in at.subheader)
    assert any("±" in m.value and "points" in m.value for m in at.markdown)


def test_a_sweep_is_stopped_and_resumed_from_its_page(runs_dir):
    from kd import jobs

    store = Store()
    sweep_id = sweep_run.start(store, Sweep(RunConfig(epochs=300), {"temperature": [1.0, 4.0]}, (0, 1)))
    deadline = time.time() + 120
    while store.get(sweep_id).status != "running" and time.time() < deadline:
        time.sleep(0.2)
    at = page("pages/sweep.py", sweep=sweep_id)
    next(b for b in at.button if b.label == "Stop sweep").click().run()
    assert not at.exception, at.exception
    deadline = time.time() + 120
    while store.get(sweep_id).status == "running" and time.time() < deadline:
        time.sleep(0.2)
    assert store.get(sweep_id).status == "stopped", (runs_dir / sweep_id / "worker.log").read_text()
    at = page("pages/sweep.py", sweep=sweep_id)
    next(b for b in at.button if b.label == "Resume").click().run()
    assert not at.exception, at.exception
    assert store.get(sweep_id).status in ("queued", "running")
    jobs.stop(sweep_id, store)  # not to the end: stopped again
    deadline = time.time() + 120
    while store.get(sweep_id).status in ("queued", "running") and time.time() < deadline:
        time.sleep(0.2)
    assert store.get(sweep_id).status == "stopped"

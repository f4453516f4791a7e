"""The dashboard's pages render without exceptions (AppTest, no browser)."""
from pathlib import Path

from streamlit.testing.v1 import AppTest

from kd.config import RunConfig
from kd.store import Store
from kd import runner

APP = str(Path(__file__).resolve().parents[1] / "app.py")


def test_home_page_renders():
    at = AppTest.from_file(APP, default_timeout=60).run()
    assert not at.exception
    assert at.title[0].value == "Distill Lab"
    assert any("python -m kd train" in c.value for c in at.code)


def test_runs_page_lists_a_real_run():
    store = Store()
    cfg = RunConfig(epochs=1, teacher_epochs=1, batch_size=256, device="cpu")
    run_id = store.create_run(cfg.to_dict())
    runner.execute(store, run_id, cfg)
    at = AppTest.from_file(APP, default_timeout=60).run()
    at.switch_page("pages/runs.py").run()
    assert not at.exception
    table = at.dataframe[0].value
    assert list(table["run"]) == [run_id] and table["status"][0] == "done"
    assert 0 < table["distilled acc %"][0] <= 100


def test_runs_page_when_empty():
    at = AppTest.from_file(APP, default_timeout=60).run()
    at.switch_page("pages/runs.py").run()
    assert not at.exception and "No runs yet" in at.info[0].value

"""End to end in a real browser: Debian's chromium driven by Playwright, against the real server.

Start training on the defaults, watch the live chart change, leave the page and come back,
see the run finish and the Results page show the three models; no exception box anywhere.
"""

import os
import shutil
import sys
from pathlib import Path
from urllib.parse import quote

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
from dashboard import FLAGS, dashboard  # noqa: E402  (starts `streamlit run app.py` on a free port)

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
if not os.environ.get("CI"):  # CI installs both; elsewhere a missing one skips the browser test
    if not Path(CHROMIUM).exists():
        pytest.skip("chromium not installed (CI installs it)", allow_module_level=True)
    pytest.importorskip("playwright.sync_api")
from playwright import sync_api as playwright  # noqa: E402

from kd.store import Store  # noqa: E402


@pytest.fixture
def server(runs_dir):
    with dashboard({**os.environ, "KD_RUNS_DIR": str(runs_dir), "KD_WARM_WORKER": "1"}) as base:  # as shipped
        yield base


@pytest.fixture
def page():
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        pg = browser.new_page(viewport={"width": 1280, "height": 800})
        yield pg
        browser.close()


def no_exception(pg) -> None:
    assert pg.locator("[data-testid='stException']").count() == 0


def test_train_watch_leave_return_and_see_results(server, page, runs_dir):
    page.goto(server + "/train")  # the first visit to a fresh server is a deep link
    page.get_by_role("button", name="Start training").wait_for(timeout=60_000)
    no_exception(page)
    nav = page.locator("[data-testid='stSidebarNav']")
    assert nav.get_by_text("Temperature", exact=True).count() == 1  # app.py's navigation ...
    assert nav.get_by_text("common", exact=True).count() == 0  # ... not a listing of pages/
    # The defaults train in about a second; longer stages leave the live page time to watch.
    for label in ("Epochs", "Teacher epochs"):
        box = page.get_by_label(label, exact=True)
        box.fill("150")
        box.press("Enter")
    seeds = page.locator("[data-testid='stRadio']").filter(has_text="Seeds")
    seeds.get_by_text("1", exact=True).click()  # one seed: one run, watched on the Live page
    page.get_by_role("button", name="Start training").click()
    page.wait_for_url("**/live?run=*", timeout=60_000)
    run_id = page.url.split("run=")[1]
    assert Store(runs_dir).get(run_id).config["epochs"] == 150

    # The live chart changes while the run trains: the event counter under the charts grows.
    caption = page.get_by_text("events", exact=False).last
    caption.wait_for(timeout=60_000)
    first = caption.inner_text()
    page.wait_for_function(
        "(t) => [...document.querySelectorAll('[data-testid=stCaptionContainer]')]"
        ".some(e => e.innerText.includes('events') && e.innerText !== t)",
        arg=first,
        timeout=60_000,
    )
    no_exception(page)
    assert page.get_by_role("button", name="Stop run").count() == 1

    # Leave for another page and come back through the URL: the run went on without us.
    page.goto(server + "/runs")
    # st.dataframe draws on a canvas; its cells are kept in the DOM for accessibility, hidden
    page.locator("[data-testid='stDataFrame'] td", has_text=run_id).first.wait_for(state="attached", timeout=30_000)
    no_exception(page)
    page.add_init_script(STOP_WATCH)  # from the next page on: is any Stop shown but the app's?
    page.goto(f"{server}/live?run={run_id}")
    page.get_by_text("See the results").wait_for(timeout=120_000)
    no_exception(page)
    # Streamlit's own Stop, beside its running indicator, stops the page's script, not the run:
    # app.py hides it. The indicator came while the page ran; its Stop never showed.
    assert page.evaluate("() => [window.statusSeen, window.otherStops]") == [True, []]

    page.get_by_text("See the results").click()
    page.wait_for_url("**/results?run=*", timeout=30_000)
    page.get_by_text("noise of ±", exact=False).first.wait_for(timeout=60_000)  # the headline
    cells = page.locator("[data-testid='stDataFrame'] td")
    cells.first.wait_for(state="attached", timeout=30_000)
    models = [cells.filter(has_text=label).count() for label in ("teacher", "student alone", "distilled student")]
    assert all(models), models
    no_exception(page)

    # Deploy: export the distilled student as ONNX, see it checked, download it.
    page.get_by_role("button", name="Export ONNX").click()
    page.get_by_text("computes what PyTorch computes", exact=False).first.wait_for(timeout=120_000)
    with page.expect_download(timeout=60_000) as got:
        page.get_by_role("button", name="Download", exact=True).click()
    assert got.value.suggested_filename == "student.onnx"
    saved = Path(got.value.path()).rename(runs_dir / "downloaded.onnx")
    from kd.export import file_metadata

    assert file_metadata(str(saved))["model"] == "student"  # an ONNX file, with the run's metadata
    no_exception(page)

    # Text from the URL is shown as text: no link, no image of the URL's choosing.
    evil = "[click](https://evil.example/a) ![x](https://evil.example/p.png) https://evil.example/b www.evil.example"
    page.goto(f"{server}/results?run={quote(evil)}")
    alert = page.locator("[data-testid='stAlert']", has_text="No such run").first
    alert.wait_for(timeout=60_000)
    assert "[click](https" in alert.inner_text().replace("\u2060", "")
    assert page.locator("a[href*='evil.example'], img[src*='evil.example']").count() == 0


STOP_WATCH = """{
    window.statusSeen = false; window.otherStops = [];
    const look = () => {
        if (document.querySelector("[data-testid='stStatusWidget']")) window.statusSeen = true;
        for (const b of document.querySelectorAll('button')) {
            const text = b.innerText.trim();
            if (/stop/i.test(text) && text !== 'Stop run' && b.offsetParent !== null) window.otherStops.push(text);
        }
    };
    new MutationObserver(look).observe(document, {childList: true, subtree: true, attributes: true});
}"""


def events_caption_changes(pg) -> None:
    """The Live page's event counter changes: the page is showing a run that is training."""
    caption = pg.get_by_text("events", exact=False).last
    caption.wait_for(timeout=60_000)
    pg.wait_for_function(
        "(t) => [...document.querySelectorAll('[data-testid=stCaptionContainer]')]"
        ".some(e => e.innerText.includes('events') && e.innerText !== t)",
        arg=caption.inner_text(),
        timeout=60_000,
    )


def test_the_dashboard_killed_and_restarted_while_a_run_trains_shows_it_live(runs_dir, page):
    import signal

    from kd import jobs, lease
    from kd.config import RunConfig
    from kd.store import Store

    env = {**os.environ, "KD_RUNS_DIR": str(runs_dir)}
    store = Store(runs_dir)
    run_id = jobs.start(RunConfig(epochs=400, teacher_epochs=400, device="cpu"), store)  # what Start does
    try:
        with dashboard(env) as first:
            page.goto(f"{first}/live?run={run_id}")
            page.get_by_text("running", exact=False).first.wait_for(timeout=60_000)
            events_caption_changes(page)
            first.process.send_signal(signal.SIGKILL)  # the dashboard dies, as in a crash
            first.process.wait(10)
        run = store.get(run_id)
        assert jobs.status(run) == "running" and lease.pid_alive(run.pid, run.pid_start)  # the run went on without it
        with dashboard(env) as second:
            page.goto(f"{second}/live?run={run_id}")
            page.get_by_text("running", exact=False).first.wait_for(timeout=60_000)
            events_caption_changes(page)  # ... and the new dashboard shows it live
            no_exception(page)
            page.get_by_role("button", name="Stop run", exact=True).click()
            page.get_by_text("stopped", exact=False).first.wait_for(timeout=30_000)
        assert store.get(run_id).status == "stopped"
    finally:
        run = store.get(run_id)
        if run.status in jobs.ACTIVE and run.pid:
            os.kill(run.pid, signal.SIGKILL)


def test_a_sweep_from_its_page_fills_its_heatmap_and_opens_its_best_cell_as_a_run(server, page, runs_dir):
    page.goto(server + "/sweep")
    page.get_by_role("button", name="Start sweep").wait_for(timeout=60_000)
    temperatures = page.locator("[data-testid='stMultiSelect']").filter(has_text="Temperatures T")
    for value in ("2.0", "8.0"):  # a 2 x 2 grid: T 1 and 4, alpha 0.5 and 0.9
        temperatures.get_by_role("button", name=f"Remove {value}").first.click()
        temperatures.get_by_role("button", name=f"Remove {value}").first.wait_for(state="detached", timeout=10_000)
    box = page.get_by_label("Epochs", exact=True)
    box.fill("30")  # long enough to watch the cells fill
    box.press("Enter")
    page.get_by_role("button", name="Start sweep").click()
    page.wait_for_url("**/sweep?sweep=*", timeout=60_000)
    sweep_id = page.url.split("sweep=")[1]
    assert Store(runs_dir).sweep_spec(sweep_id)["axes"] == {"temperature": [1.0, 4.0], "alpha": [0.5, 0.9]}
    # The heatmap fills while the students train: a cell shows the epoch it is at ...
    page.locator(".js-plotly-plot text", has_text="epoch").first.wait_for(timeout=120_000)
    no_exception(page)
    # ... and settles on mean ± std over the seeds once stored.
    page.locator("[data-testid='stMarkdownContainer']", has_text="12 of 12 students stored").filter(
        has_text="done"
    ).wait_for(timeout=300_000)
    page.locator(".js-plotly-plot text", has_text="±").first.wait_for(timeout=60_000)
    no_exception(page)
    for k, title in ((3, "T = 4, α = 0.9"), (0, "T = 1, α = 0.5")):  # a click on a cell opens it
        for _ in range(5):  # a click that lands while the page redraws its chart is lost: click again
            page.locator("[data-testid='stStatusWidget']").wait_for(state="detached", timeout=30_000)  # idle
            box = page.locator(".js-plotly-plot").first.locator(".scatterlayer .point").nth(k).bounding_box()
            if box is None:  # the chart was being redrawn: its points not laid out yet
                page.wait_for_timeout(500)
                continue
            page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)  # points in grid order
            try:
                page.locator("h3", has_text=title).wait_for(timeout=10_000)
                break
            except playwright.TimeoutError:
                continue
        page.locator("h3", has_text=title).wait_for(timeout=10_000)
    page.get_by_text("Open as a run", exact=False).first.click()
    page.wait_for_url("**/results?run=*", timeout=30_000)
    cells = page.locator("[data-testid='stDataFrame'] td")
    cells.first.wait_for(state="attached", timeout=60_000)
    assert all(cells.filter(has_text=label).count() for label in ("teacher", "student alone", "distilled student"))
    no_exception(page)
    page.goto(server + "/pareto")
    page.locator(".js-plotly-plot").first.wait_for(timeout=60_000)
    assert page.locator(".js-plotly-plot .scatterlayer .point").count() >= 3
    no_exception(page)


def _cell(page, row: int, column: int):
    """The centre of a cell of the Runs page's table, drawn on a canvas: column 0 is the ticks,
    column 1 the names (at least 100 px wide); rows 35 px tall under a 35 px header."""
    box = page.locator("[data-testid='stDataFrame']").first.bounding_box()
    return box["x"] + (40 if column == 0 else 130), box["y"] + 35 + 35 * row + 17


def _idle(page) -> None:
    """Wait until the app has no script run going (its status widget gone)."""
    page.wait_for_function("() => !document.querySelector('[data-testid=stStatusWidget]')", timeout=60_000)


def _poll(predicate, seconds: float) -> bool:
    import time

    deadline = time.time() + seconds
    while time.time() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return False


def test_runs_page_ticks_keep_each_other_rename_and_delete_asks_first(server, page, runs_dir):
    """A ?compare= link restores its ticks, a new tick keeps them, a name is edited in place, and
    Delete asks first, then clears the ticks (nothing under the pointer for a second click)."""
    from kd import runner
    from kd.config import RunConfig

    store = Store(runs_dir)
    tiny = RunConfig(epochs=1, teacher_epochs=1, batch_size=256, device="cpu")
    ids = [runner.train_new(store, tiny.replace(seed=s))[0] for s in (0, 1, 2)]  # listed newest first
    page.goto(f"{server}/runs?compare={ids[0]},{ids[1]}")
    page.get_by_text("2 runs chosen").wait_for(timeout=60_000)
    no_exception(page)

    x, y = _cell(page, 0, 0)  # the newest run, ids[2]: ticked (a click selects the cell, space ticks it)
    for _ in range(5):  # a key pressed while the page redraws is lost: again
        _idle(page)
        page.mouse.click(x, y)
        page.keyboard.press(" ")
        if _poll(lambda: page.get_by_text("3 runs chosen").count(), 8):
            break
    assert set(page.url.split("compare=")[1].replace("%2C", ",").split(",")) == set(ids)

    x, y = _cell(page, 1, 1)  # rename ids[1]; an edit typed while the page redraws is lost: again
    for _ in range(5):
        _idle(page)
        page.mouse.dblclick(x, y)  # the cell's editor: a textarea over the canvas
        editor = page.locator("textarea.gdg-input")
        editor.wait_for(timeout=10_000)
        editor.fill("my favourite")
        editor.press("Enter")
        if _poll(lambda: Store(runs_dir).get(ids[1]).name == "my favourite", 10):
            break
    cells = "[...document.querySelectorAll('[data-testid=stDataFrame] td')]"
    page.wait_for_function(f"() => {cells}.some(e => e.innerText.includes('my favourite'))", timeout=30_000)
    assert Store(runs_dir).get(ids[1]).name == "my favourite"
    no_exception(page)

    asked = False
    for _ in range(5):  # a dialog opened while the page redraws closes with the redraw: again
        _idle(page)
        page.get_by_role("button", name="Delete the 3 ticked run(s)…").click()
        dialog = page.get_by_role("dialog")
        try:
            dialog.get_by_text("Delete 3 runs?").wait_for(timeout=10_000)
            asked = asked or len(Store(runs_dir).runs()) == 3  # asked, not done
            dialog.get_by_role("button", name="Delete", exact=True).click(timeout=5_000)
        except playwright.TimeoutError:
            continue
        if _poll(lambda: not Store(runs_dir).runs(), 10):
            break
    assert asked
    page.get_by_text("No runs yet").wait_for(timeout=30_000)
    assert Store(runs_dir).runs() == [] and "compare" not in page.url
    no_exception(page)


def test_an_uploaded_zip_is_named_by_its_file_in_titles_and_tables(server, page, runs_dir, tmp_path):
    import io
    import zipfile

    from PIL import Image

    archive = tmp_path / "leaf shapes.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for cls, colour in (("round", "green"), ("spiky", "brown")):
            for i in range(12):
                buf = io.BytesIO()
                Image.new("RGB", (12, 12), colour).save(buf, "PNG")
                z.writestr(f"leaves/{cls}/{i}.png", buf.getvalue())
    page.goto(server + "/train")
    page.get_by_role("button", name="Start training").wait_for(timeout=60_000)
    page.get_by_role("combobox", name="Data set").click()
    page.get_by_role("option", name="upload my data…").click()
    page.locator("input[type=file]").set_input_files(str(archive))
    start = page.get_by_role("button", name="Start training")
    start.wait_for(timeout=60_000)
    for label in ("Epochs", "Teacher epochs"):
        box = page.get_by_label(label, exact=True)
        box.fill("2")
        box.press("Enter")
    page.locator("[data-testid='stRadio']").filter(has_text="Seeds").get_by_text("1", exact=True).click()
    start.click()
    page.wait_for_url("**/live?run=*", timeout=60_000)
    run_id = page.url.split("run=")[1]
    page.get_by_text("See the results").wait_for(timeout=180_000)
    assert "leaf shapes.zip" in page.locator("body").inner_text()  # its name, not the stored path
    page.goto(f"{server}/results?run={run_id}")
    page.get_by_text("noise of ±", exact=False).first.wait_for(timeout=60_000)
    text = page.locator("body").inner_text()
    assert "leaf shapes.zip" in text and "uploads/" not in text
    page.goto(server + "/runs")
    name = page.locator("[data-testid='stDataFrame'] td", has_text="leaf shapes.zip").first
    name.wait_for(state="attached", timeout=30_000)
    assert Store(runs_dir).get(run_id).config["dataset"].startswith("folder:")  # the store keeps the path
    no_exception(page)


def test_an_uploaded_csv_shows_its_classes_and_rows_then_trains_named_by_its_file(server, page, runs_dir, tmp_path):
    from tests.test_owndata import table

    csv = tmp_path / "lab results.csv"
    table().to_csv(csv, index=False)
    page.goto(server + "/train")
    page.get_by_role("button", name="Start training").wait_for(timeout=60_000)
    page.get_by_role("combobox", name="Data set").click()
    page.get_by_role("option", name="upload my data…").click()
    page.locator("input[type=file]").set_input_files(str(csv))
    page.get_by_text("Your data: lab results.csv").wait_for(timeout=60_000)
    grid = page.locator("[data-testid='stDataFrame'] td")
    grid.filter(has_text="all classes").first.wait_for(state="attached", timeout=30_000)  # counts per split
    grid.filter(has_text="green").first.wait_for(state="attached", timeout=30_000)  # the first rows
    for label in ("Epochs", "Teacher epochs"):
        box = page.get_by_label(label, exact=True)
        box.fill("5")
        box.press("Enter")
    page.locator("[data-testid='stRadio']").filter(has_text="Seeds").get_by_text("1", exact=True).click()
    page.get_by_role("button", name="Start training").click()
    page.wait_for_url("**/live?run=*", timeout=60_000)
    page.get_by_text("See the results").wait_for(timeout=180_000)
    body = page.locator("body").inner_text()
    assert "lab results.csv" in body and "label column 'outcome'" in body  # named, and how it was read
    no_exception(page)


def test_a_train_link_reopens_its_setup_in_the_browser_and_a_change_makes_a_new_link(server, page):
    page.goto(server + "/train?method=dkd&temperature=2&epochs=7&o.dkd_beta=4&seeds=1")
    page.get_by_role("button", name="Start training").wait_for(timeout=60_000)
    assert "dkd" in page.get_by_role("combobox", name="Method").input_value()
    assert page.get_by_label("Epochs", exact=True).input_value() == "7"
    slider = page.locator("[data-testid='stSlider']").filter(has_text="Temperature T")
    assert "2.00" in slider.inner_text()
    box = page.get_by_label("Epochs", exact=True)
    box.fill("9")
    box.press("Enter")
    page.wait_for_url("**epochs=9**", timeout=30_000)  # the URL follows the form
    link = page.url
    assert "method=dkd" in link and "o.dkd_beta=4" in link
    fresh = page.context.browser.new_page()  # someone else opening the link: the same setup
    fresh.goto(link)
    fresh.get_by_role("button", name="Start training").wait_for(timeout=60_000)
    assert fresh.get_by_label("Epochs", exact=True).input_value() == "9"
    assert "dkd" in fresh.get_by_role("combobox", name="Method").input_value()
    no_exception(fresh)

"""kd.plots: frames from events, downsampling, and what each figure actually draws."""

import math

import numpy as np
import pytest

from kd import plots
from kd.plots import COLORS, LABELS, MODELS


def fake_run(epochs=10, steps_per_epoch=1000, stop_student_at=None):
    """Events of a 3-stage run in the trainer's shapes; the distilled student has ce + soft terms."""
    ev = [
        {
            "kind": "run",
            "status": "running",
            "device": "cpu",
            "train_size": 100,
            "val_size": 10,
            "test_size": 10,
            "num_classes": 3,
        }
    ]
    total = epochs * steps_per_epoch
    for stage in MODELS:
        ev.append(
            {
                "kind": "stage",
                "stage": stage,
                "status": "started",
                "epochs": epochs,
                "steps_per_epoch": steps_per_epoch,
                "params": 1000,
            }
        )
        step = 0
        for epoch in range(1, epochs + 1):
            for _ in range(steps_per_epoch):
                step += 1
                if stop_student_at is not None and stage == "student" and step > stop_student_at:
                    return ev
                terms = {"loss_ce": 2.0 / step}
                if stage == "student":
                    terms = {"loss_ce": 1.0 / step, "loss_soft": 1.5 / step}
                ev.append(
                    {
                        "kind": "step",
                        "stage": stage,
                        "epoch": epoch,
                        "step": step,
                        "total_steps": total,
                        "loss": sum(terms.values()),
                        **terms,
                        "lr": 0.1,
                        "samples_per_s": 1e4,
                    }
                )
            ev.append(
                {
                    "kind": "epoch",
                    "stage": stage,
                    "epoch": epoch,
                    "epochs": epochs,
                    "step": step,
                    "train_acc": 0.5 + epoch / 50,
                    "val_acc": 0.45 + epoch / 50,
                    "val_loss": 1 / epoch,
                    "seconds": float(epoch),
                }
            )
        ev.append({"kind": "stage", "stage": stage, "status": "done", "epochs": epochs, "seconds": 1.0, "message": ""})
    ev.append({"kind": "run", "status": "done", "summary": {}})
    return ev


@pytest.fixture(scope="module")
def big_run():
    return fake_run(10, 1000)  # 30,000 step events


def fake_models():
    def bins(shift):
        return [
            {
                "lo": i / 15,
                "hi": (i + 1) / 15,
                "count": 0 if i < 5 else 10 + i,
                "confidence": (i + 0.5) / 15,
                "accuracy": min(1.0, (i + 0.5) / 15 + shift),
            }
            for i in range(15)
        ]

    base = dict(
        size_mb=0.1,
        latency_ms=0.05,
        train_seconds=3.0,
        epochs=10,
        status="done",
        confusion=[[5, 1, 0], [0, 6, 1], [2, 0, 4]],
    )
    return {
        "teacher": {
            **base,
            "accuracy": 0.98,
            "params": 535812,
            "flops": 2_140_000,
            "latency_ms_256": 8.0,
            "agreement": None,
            "ece": 0.031,
            "reliability": bins(0.02),
        },
        "baseline": {
            **base,
            "accuracy": 0.90,
            "params": 25_000,
            "flops": 100_000,
            "latency_ms_256": 1.0,
            "agreement": 0.91,
            "ece": 0.05,
            "reliability": bins(-0.05),
        },
        "student": {
            **base,
            "accuracy": 0.94,
            "params": 25_000,
            "flops": 100_000,
            "latency_ms_256": 1.1,
            "agreement": 0.95,
            "ece": 0.021,
            "reliability": bins(0.0),
        },
    }


# -- frames --------------------------------------------------------------------------------
def test_events_frames_rows_and_columns(big_run):
    steps, epochs = plots.events_frames(big_run)
    assert len(steps) == 30_000 and len(epochs) == 30
    assert list(steps.columns) == [
        *["stage", "epoch", "step", "loss", "loss_ce", "loss_soft", "lr", "samples_per_s"],
        *["total_steps", "epochs", "at_epoch"],  # where each window ends, in epochs
    ]
    assert list(epochs.columns) == ["stage", "epoch", "epochs", "train_acc", "val_acc", "val_loss", "seconds"]
    assert steps["loss_soft"].notna().sum() == 10_000  # only the distilled student has the soft term
    assert steps.groupby("stage")["step"].max().to_dict() == {s: 10_000 for s in MODELS}
    assert epochs["val_acc"].dtype.kind == "f"


def test_events_frames_empty_and_none_values():
    steps, epochs = plots.events_frames([{"kind": "run", "status": "running"}])
    assert steps.empty and list(steps.columns)[:6] == ["stage", "epoch", "step", "loss", "lr", "samples_per_s"]
    assert epochs.empty and "val_acc" in epochs.columns
    _, epochs = plots.events_frames(
        iter(
            [
                {
                    "kind": "epoch",
                    "stage": "teacher",
                    "epoch": 1,
                    "epochs": 1,
                    "step": 5,
                    "train_acc": 0.5,
                    "val_acc": None,
                    "val_loss": None,
                    "seconds": 1.0,
                }
            ]
        )
    )
    assert math.isnan(epochs["val_acc"].iloc[0])


def test_downsample_bounds_and_keeps_ends(big_run):
    steps, _ = plots.events_frames(big_run)
    small = plots.downsample(steps, max_points=100)
    for stage, group in small.groupby("stage"):
        full = steps[steps["stage"] == stage]
        assert len(group) == 100
        assert group.index[0] == full.index[0] and group.index[-1] == full.index[-1]
        assert group["step"].is_monotonic_increasing
    short = steps.groupby("stage").head(50)
    assert plots.downsample(short, max_points=100).equals(short)  # short groups untouched
    assert plots.downsample(steps.iloc[:0]).empty


# -- curves --------------------------------------------------------------------------------
def test_loss_figure_colours_names_terms_and_point_budget(big_run):
    steps, _ = plots.events_frames(big_run)
    fig = plots.loss_figure(steps, max_points=500)
    names = [t.name for t in fig.data]
    assert names[:3] == ["teacher", "student alone", "distilled student"]
    assert "distilled student: soft (T²·KL)" in names and "distilled student: CE" in names
    assert not any(n.startswith("teacher:") for n in names)  # a single term equals the total: not redrawn
    for t in fig.data:
        key = t.legendgroup
        assert t.line.color == COLORS[key] and t.name.startswith(LABELS[key])
        assert (t.line.dash in (None, "solid")) == (t.name == LABELS[key])  # totals solid, terms dashed
    n_terms = 2
    assert sum(len(t.x) for t in fig.data) <= 3 * 500 * (1 + n_terms)
    assert fig.layout.xaxis.title.text == "epoch (within stage)" and fig.layout.yaxis.type == "log"
    assert fig.layout.hovermode == "x unified" and fig.layout.template.layout.paper_bgcolor == "white"


def test_loss_figure_empty():
    steps, _ = plots.events_frames([])
    assert len(plots.loss_figure(steps).data) == 0


def test_accuracy_figure_percent_and_dashes(big_run):
    _, epochs = plots.events_frames(big_run)
    fig = plots.accuracy_figure(epochs)
    assert len(fig.data) == 6
    val = next(t for t in fig.data if t.name == "distilled student (val)")
    train = next(t for t in fig.data if t.name == "distilled student (train)")
    assert val.line.color == train.line.color == COLORS["student"]
    assert train.line.dash == "dash" and val.line.dash == "solid"
    assert val.y[-1] == pytest.approx((0.45 + 10 / 50) * 100)
    assert fig.layout.xaxis.title.text == "epoch" and fig.layout.yaxis.title.text == "accuracy (%)"


# -- progress ------------------------------------------------------------------------------
def test_progress_mid_run_and_loaded_teacher():
    assert plots.progress([]) == {"teacher": 0.0, "baseline": 0.0, "student": 0.0}
    ev = fake_run(2, 10, stop_student_at=5)  # student mid-way: last step 5 of 20
    assert plots.progress(ev) == {"teacher": 1.0, "baseline": 1.0, "student": 0.25}
    loaded = [
        {"kind": "stage", "stage": "teacher", "status": "loaded", "epochs": 0, "message": "x"},
        {"kind": "stage", "stage": "baseline", "status": "started", "epochs": 1, "steps_per_epoch": 4, "params": 1},
    ]
    assert plots.progress(loaded) == {"teacher": 1.0, "baseline": 0.0, "student": 0.0}
    stopped = ev + [{"kind": "stage", "stage": "student", "status": "stopped", "epochs": 0, "message": "x"}]
    assert plots.progress(stopped)["student"] == 0.25  # where it stopped, not "100 %"


# -- results -------------------------------------------------------------------------------
def test_metrics_frame_units_and_order():
    models = fake_models()
    frame = plots.metrics_frame({k: models[k] for k in ("student", "teacher")})  # order of MODELS, not input
    assert list(frame["model"]) == ["teacher", "distilled student"] and list(frame.index) == ["teacher", "student"]
    assert frame.loc["student", "accuracy"] == pytest.approx(94.0)
    assert frame.loc["student", "agreement"] == pytest.approx(95.0)
    assert math.isnan(frame.loc["teacher", "agreement"])
    assert frame.loc["teacher", "mflops"] == pytest.approx(2.14)
    assert list(frame.columns) == [
        "model",
        "accuracy",
        "params",
        "size_mb",
        "mflops",
        "latency_ms",
        "latency_ms_256",
        "agreement",
        "ece",
        "train_seconds",
    ]


def test_metrics_table_gives_the_latency_its_spread_where_the_run_kept_it():
    models = fake_models()
    models["teacher"] = {**models["teacher"], "latency_ms_256_quartiles": [2.104, 2.31, 2.478]}
    table = plots.metrics_table(models)
    headers = list(table.columns)
    assert headers[headers.index("ms @256") + 1] == "IQR @256"
    assert list(table["IQR @256"]) == ["2.10–2.48", "", ""]  # the others were timed without their quartiles
    assert "IQR @256" not in plots.metrics_table(fake_models())  # an older run: no empty column


def test_comparison_figure_five_panels_three_bars():
    fig = plots.comparison_figure(fake_models())
    panels = {}
    for t in fig.data:
        assert t.type == "bar" and t.marker.color == COLORS[t.legendgroup] and t.name == LABELS[t.legendgroup]
        panels.setdefault(t.xaxis, []).append(t)
    assert len(panels) == 5 and all(len(bars) == 3 for bars in panels.values())
    assert sum(bool(t.showlegend) for t in fig.data) == 3  # one legend entry per model
    titles = [a.text for a in fig.layout.annotations]
    assert titles == ["test accuracy (%, zoomed)", "parameters", "size (MB)", "MFLOPs / example", "ms / batch of 256"]
    params_teacher = next(t for t in panels["x2"] if t.legendgroup == "teacher")
    assert params_teacher.text == ("535.8k",)
    low, high = fig.layout.yaxis.range  # accuracy zoomed: the three bars' differences fill the panel
    accuracies = [t.y[0] for t in panels["x"]]
    assert 0 < low < min(accuracies) and max(accuracies) < high and high - low < 40  # 90 to 98 %, not 0 to 100


def test_the_latency_panel_draws_the_middle_half_of_the_timed_rounds_as_whiskers():
    models = fake_models()
    models["teacher"]["latency_ms_256_quartiles"] = [7.5, models["teacher"]["latency_ms_256"], 9.0]
    fig = plots.comparison_figure(models)
    bars = {t.legendgroup: t for t in fig.data if t.xaxis == "x5"}
    median = models["teacher"]["latency_ms_256"]
    assert bars["teacher"].error_y.array == (9.0 - median,) and bars["teacher"].error_y.arrayminus == (median - 7.5,)
    assert bars["student"].error_y.array is None  # a run from before: the median alone


def test_compact():
    assert plots.compact(535812) == "535.8k" and plots.compact(2_140_000) == "2.14M"
    assert plots.compact(0.0123) == "0.0123" and plots.compact(float("nan")) == ""


def test_confusion_figure():
    m = fake_models()["student"]["confusion"]
    fig = plots.confusion_figure(m, ["a", "b", "c"], "distilled student")
    hm = fig.data[0]
    assert hm.type == "heatmap" and np.array_equal(np.asarray(hm.z), np.asarray(m))
    assert fig.layout.yaxis.autorange == "reversed"
    assert fig.layout.xaxis.title.text == "predicted class" and fig.layout.yaxis.title.text == "true class"


def test_reliability_figure():
    fig = plots.reliability_figure(fake_models())
    diag = fig.data[0]
    assert diag.name == "perfect calibration" and list(diag.x) == [0, 100] and diag.line.dash == "dash"
    names = [t.name for t in fig.data[1:]]
    assert names == ["teacher (ECE 0.031)", "student alone (ECE 0.050)", "distilled student (ECE 0.021)"]
    student = fig.data[3]
    assert len(student.x) == 10 and student.line.color == COLORS["student"]  # empty bins dropped
    assert max(student.x) <= 100 and tuple(fig.layout.xaxis.range) == (0, 100)
    assert fig.layout.xaxis.title.text == "confidence (%)" and fig.layout.yaxis.title.text == "accuracy (%)"


def test_boundary_figure_one_panel_per_model():
    n = 20
    xx, yy = np.meshgrid(np.linspace(-1, 1, n), np.linspace(-2, 2, n))
    preds = {k: (xx.ravel() > 0).astype(int) for k in MODELS}
    rng = np.random.default_rng(0)
    pts = rng.uniform(-1, 1, (30, 2))
    fig = plots.boundary_figure(xx, yy, preds, pts, (pts[:, 0] > 0).astype(int), ["left", "right"])
    heatmaps = [t for t in fig.data if t.type == "heatmap"]
    assert len(heatmaps) == 3 and {t.xaxis for t in heatmaps} == {"x", "x2", "x3"}
    assert np.array_equal(np.asarray(heatmaps[0].z), preds["teacher"].reshape(n, n))
    assert [a.text for a in fig.layout.annotations] == [LABELS[k] for k in MODELS]
    assert fig.layout.yaxis2.scaleanchor == "x2" and fig.layout.xaxis.title.text == "x1"
    assert sum(bool(t.showlegend) for t in fig.data if t.type == "scatter") == 2  # one entry per class


# -- temperature ---------------------------------------------------------------------------
def test_temperature_and_entropy_figures():
    fig = plots.temperature_figure({1.0: np.array([0.7, 0.2, 0.1]), 4.0: np.array([0.4, 0.3, 0.3])}, ["a", "b", "c"])
    assert [t.name for t in fig.data] == ["T = 1", "T = 4"] and fig.layout.barmode == "group"
    assert fig.layout.xaxis.title.text == "class" and fig.layout.yaxis.title.text == "probability"
    temps = np.linspace(0.5, 10, 20)
    fig = plots.entropy_figure(temps, np.log2(3) * (1 - np.exp(-temps)), current_T=4.0, num_classes=3)
    assert fig.layout.xaxis.title.text == "temperature T" and fig.layout.yaxis.title.text == "entropy (bits)"
    hline = [s for s in fig.layout.shapes if s.y0 == s.y1]
    assert hline and hline[0].y0 == pytest.approx(math.log2(3))
    assert any("uniform" in a.text for a in fig.layout.annotations)
    assert any(s.x0 == s.x1 == 4.0 for s in fig.layout.shapes)  # marks the current T


def test_run_notes_say_the_last_cache_note_and_the_last_learned_value():
    stage = {"kind": "stage", "status": "started", "epochs": 2, "steps_per_epoch": 3, "params": 10}
    epoch = {"kind": "epoch", "epochs": 2, "step": 3, "train_acc": 0.5, "val_acc": None, "val_loss": None}
    events = [
        {**stage, "stage": "teacher"},
        {**stage, "stage": "student", "teacher_outputs": "logits cached once: 0.1 MB"},
        {**epoch, "stage": "student", "epoch": 1, "seconds": 1.0, "method": {"T": 4.0}},
        {**epoch, "stage": "student", "epoch": 2, "seconds": 2.0, "method": {"T": 3.21}},
        {"kind": "a kind from a newer version"},
    ]
    assert plots.run_notes(events) == ["logits cached once: 0.1 MB", "learned T = 3.21"]
    assert plots.run_notes(events[:1]) == []


def test_loss_figure_x_is_in_epochs_where_steps_say_their_stages_epochs():
    """Steps that carry their stage's epochs sit at step / steps-per-epoch; older ones at their step."""
    from kd.events import Step, to_dict

    new = [
        to_dict(
            Step(
                stage="teacher",
                epoch=e,
                step=10 * e,
                total_steps=30,
                loss=1.0 / e,
                terms={"ce": 1.0 / e},
                lr=0.1,
                samples_per_s=None,
                epochs=3,
            )
        )
        for e in (1, 2, 3)
    ]
    old = [{k: v for k, v in d.items() if k != "epochs"} | {"stage": "student"} for d in new]
    steps, _ = plots.events_frames(new + old)
    fig = plots.loss_figure(steps)
    by_name = {t.name: list(t.x) for t in fig.data}
    assert by_name["teacher"] == [1.0, 2.0, 3.0] and by_name["distilled student"] == [10, 20, 30]

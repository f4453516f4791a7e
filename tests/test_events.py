"""kd/events.py: every kind round-trips, a real run writes only declared events in the declared
order, runs written by older versions still read, and unknown events crash no reader."""

import ast
import re
from dataclasses import replace
from pathlib import Path

import pytest

from kd import cli, events, plots
from kd.config import RunConfig
from kd.events import (
    STAGES,
    Epoch,
    Metrics,
    RunEnded,
    RunStarted,
    StageEnded,
    StageStarted,
    Step,
    Unknown,
    parse,
    to_dict,
)
from kd.store import Store

KD = Path(__file__).resolve().parents[1] / "kd"

ONE_OF_EACH = [
    RunStarted(status="running", device="cpu", train_size=1293, val_size=144, test_size=360, num_classes=10),
    RunStarted(status="resumed", device="cuda", train_size=10, val_size=0, test_size=5, num_classes=2),
    StageStarted(stage="teacher", epochs=2, steps_per_epoch=11, params=167_178, train_size=1293),
    StageStarted(
        stage="student", epochs=2, steps_per_epoch=1, params=9_610, train_size=64, teacher_outputs="computed once"
    ),
    Step(
        stage="student",
        epoch=1,
        step=3,
        total_steps=22,
        loss=1.5,
        terms={"ce": 0.5, "soft": 1.0},
        lr=0.001,
        samples_per_s=None,
    ),
    Epoch(
        stage="baseline",
        epoch=1,
        epochs=2,
        step=11,
        train_acc=0.5,
        val_acc=None,
        val_loss=None,
        seconds=0.25,
        method={"T": 3.5},
    ),
    StageEnded(stage="baseline", status="stopped", epochs=1, seconds=0.5, message="stopped by request in epoch 2"),
    Metrics(
        model="teacher",
        accuracy=0.97,
        params=167_178,
        size_mb=0.67,
        flops=334_000,
        latency_ms=0.05,
        latency_ms_256=1.1,
        agreement=None,
        ece=0.02,
        train_seconds=1.5,
        epochs=2,
        status="done",
    ),
    RunEnded(status="done", summary={"gain": 0.01, "kept": 0.98, "compression": 17.4, "speedup": None}),
    Unknown({"kind": "note", "text": "from a newer version"}),
]


@pytest.mark.parametrize("event", ONE_OF_EACH, ids=lambda e: type(e).__name__)
def test_every_kind_round_trips_through_its_dict(event):
    stored = to_dict(event)
    assert parse(stored) == event
    assert list(to_dict(parse(stored)).items()) == list(stored.items())  # same keys, same order


def test_the_dict_has_todays_keys():
    step = to_dict(ONE_OF_EACH[4])
    keys = ["kind", "stage", "epoch", "step", "total_steps", "loss", "loss_ce", "loss_soft", "lr", "samples_per_s"]
    assert list(step) == keys
    assert step["samples_per_s"] is None  # stored as null, not left out
    assert "method" not in to_dict(replace(ONE_OF_EACH[5], method=None))  # left out when absent
    assert to_dict(ONE_OF_EACH[2]) == {
        "kind": "stage",
        "stage": "teacher",
        "status": "started",
        "epochs": 2,
        "steps_per_epoch": 11,
        "params": 167_178,
        "train_size": 1293,
    }


def test_a_real_run_stores_only_declared_events_in_the_declared_order(capsys):
    argv = ["train", "--dataset", "digits", "--epochs", "1", "--teacher-epochs", "2", "--device", "cpu"]
    assert cli.main([*argv, "--method", "ctkd", "--batch-size", "256"]) == 0
    store = Store()
    (run,) = store.runs()
    stored = [d for _, d in store.events(run.id)]
    parsed = [parse(d) for d in stored]
    for d, e in zip(stored, parsed):
        assert not isinstance(e, Unknown) and e.extra == {}, d  # every key declared
        assert to_dict(e) == d
    letters = {RunStarted: "R", StageStarted: "s", Step: ".", Epoch: "e", StageEnded: "d", Metrics: "m", RunEnded: "F"}
    order = "".join(letters[type(e)] for e in parsed)
    assert re.fullmatch(r"R(s(\.+e)+d){3}m{3}F", order), order
    assert [e.stage for e in parsed if isinstance(e, StageStarted)] == list(STAGES)
    assert [e.model for e in parsed if isinstance(e, Metrics)] == list(STAGES)
    epochs = [e for e in parsed if isinstance(e, Epoch)]
    assert [e.epoch for e in epochs] == [1, 2, 1, 1] and all(0 <= e.train_acc <= 1 for e in epochs)
    assert "T" in epochs[-1].method  # ctkd reports its learned temperature
    student = [e for e in parsed if isinstance(e, StageStarted)][-1]
    assert student.teacher_outputs and student.train_size == parsed[0].train_size
    assert {"ce", "soft"} <= set([e for e in parsed if isinstance(e, Step)][-1].terms)
    assert parsed[-1].status == "done" and parsed[-1].summary == run.summary
    err = capsys.readouterr().err  # the CLI's progress lines, read through parse
    assert "distilled student: " in err and re.search(r"student alone\s+epoch\s+1/1", err), err


# The shapes the first version of the trainer stored (no train_size when a stage starts, no
# seconds for a loaded teacher, no method report), copied from its emit calls.
OLD_RUN = [
    {
        "kind": "run",
        "status": "running",
        "device": "cpu",
        "train_size": 1293,
        "val_size": 144,
        "test_size": 360,
        "num_classes": 10,
    },
    {"kind": "stage", "stage": "teacher", "status": "loaded", "epochs": 0, "message": "loaded from t.safetensors"},
    {"kind": "stage", "stage": "baseline", "status": "started", "epochs": 1, "steps_per_epoch": 11, "params": 9610},
    {
        "kind": "step",
        "stage": "baseline",
        "epoch": 1,
        "step": 11,
        "total_steps": 11,
        "loss": 0.9,
        "loss_ce": 0.9,
        "lr": 0.0,
        "samples_per_s": 51234.5,
    },
    {
        "kind": "epoch",
        "stage": "baseline",
        "epoch": 1,
        "epochs": 1,
        "step": 11,
        "train_acc": 0.71,
        "val_acc": 0.8,
        "val_loss": 0.7,
        "seconds": 0.2,
    },
    {"kind": "stage", "stage": "baseline", "status": "done", "epochs": 1, "seconds": 0.2, "message": ""},
    {
        "kind": "metrics",
        "model": "baseline",
        "accuracy": 0.81,
        "params": 9610,
        "size_mb": 0.04,
        "flops": 19000,
        "latency_ms": 0.01,
        "latency_ms_256": 0.1,
        "agreement": 0.8,
        "ece": 0.05,
        "train_seconds": 0.2,
        "epochs": 1,
        "status": "done",
    },
    {"kind": "run", "status": "stopped", "summary": {"gain": None, "kept": None, "compression": None, "speedup": None}},
]


def test_a_run_stored_by_an_older_version_still_reads():
    parsed = [parse(d) for d in OLD_RUN]
    assert [type(e) for e in parsed] == [
        RunStarted,
        StageEnded,
        StageStarted,
        Step,
        Epoch,
        StageEnded,
        Metrics,
        RunEnded,
    ]
    assert all(e.extra == {} for e in parsed)
    loaded, started = parsed[1], parsed[2]
    assert loaded.seconds is None and loaded.status == "loaded" and started.train_size is None
    assert parsed[4].method is None and parsed[3].terms == {"ce": 0.9}
    assert [to_dict(e) for e in parsed] == OLD_RUN  # written back unchanged
    assert plots.progress(OLD_RUN) == {"teacher": 1.0, "baseline": 1.0, "student": 0.0}
    steps, epochs = plots.events_frames(OLD_RUN)
    assert list(steps["loss_ce"]) == [0.9] and list(epochs["val_acc"]) == [0.8]


def test_unknown_kinds_extra_keys_and_missing_fields_crash_no_reader(capsys):
    newer = [
        OLD_RUN[0],
        {"kind": "checkpoint", "stage": "baseline", "epoch": 1},  # a kind this version does not know
        {**OLD_RUN[2], "grad_clip": 1.0},  # a key it does not know
        {"kind": "step", "stage": "baseline", "epoch": 1},  # a field its kind needs is missing
        {**OLD_RUN[3], "grad_norm": 2.5},
        OLD_RUN[4],
    ]
    parsed = [parse(d) for d in newer]
    assert isinstance(parsed[1], Unknown) and parsed[1].data == newer[1]
    assert isinstance(parsed[3], Unknown)
    assert parsed[2].extra == {"grad_clip": 1.0} and parsed[4].extra == {"grad_norm": 2.5}
    assert parsed[4].terms == {"ce": 0.9}  # loss_* keys are terms, never extra
    assert [to_dict(e) for e in parsed] == newer  # kept, and written back as they came
    steps, epochs = plots.events_frames(newer)
    assert len(steps) == 1 and len(epochs) == 1
    assert plots.progress(newer)["baseline"] == 1.0
    progress = cli.Progress(RunConfig(dataset="digits"))
    for d in newer:
        progress(d)
    assert "student alone   " in capsys.readouterr().err


def test_only_kd_events_spells_out_event_kinds_and_the_stage_names():
    """A kind's string ("kind", "step", ...) as a dict key or comparison, and the tuple of stage
    names, appear in kd/events.py only; every other module and page imports them from there."""
    for path in sorted(KD.rglob("*.py")) + sorted((KD.parent / "pages").glob("*.py")) + [KD.parent / "app.py"]:
        if path.name == "events.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant):
                assert node.value != "kind", f"{path.name}:{node.lineno} spells out an event's kind"
            if isinstance(node, ast.Tuple) and all(isinstance(x, ast.Constant) for x in node.elts):
                assert tuple(x.value for x in node.elts) != STAGES, f"{path.name}:{node.lineno} spells out STAGES"
    assert plots.MODELS is STAGES and plots.LABELS is events.STAGE_TITLES  # what the pages use

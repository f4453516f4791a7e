"""Property-based: any value of any RunConfig field, any mix of CLI flags. Each input is accepted
or refused with a message naming the field (the flag on the command line); never a traceback,
and exit code 2 on the CLI."""

import json
import re

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from kd import cli
from kd.config import AUGMENT, DEVICES, OPTIMIZERS, RunConfig
from kd.data import DATASETS
from kd.errors import ConfigError
from kd.methods import METHODS
from kd.models import MODELS

FIELDS = [f for f in RunConfig.__dataclass_fields__]
# Data sets that need no download: the property test must never touch the network.
OFFLINE_SETS = [k for k in DATASETS.keys() if k in ("digits", "moons", "spirals", "circles")]
CHOICES = {
    "dataset": OFFLINE_SETS
    + ["folder:", "folder:/no/such/folder", "table:", "table:/no/such.csv", "npz:/no/such.npz", "Digits", ""],
    "teacher": MODELS.keys() + ["resnet", "MLP-128"],
    "student": MODELS.keys() + ["x"],
    "method": METHODS.keys() + ["hinton", "KD"],
    "optimizer": list(OPTIMIZERS) + ["adamw"],
    "device": list(DEVICES) + ["gpu", "cuda:0"],
    "augment": list(AUGMENT) + ["both"],
    "fill_missing": ["none", "mean", "zero", "median", ""],
}

anything = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=6,
)


def value_for(field: str):
    """Plausible values, edge values and garbage of every JSON type, for one field."""
    plausible = {
        "temperature": st.floats(-2, 1200) | st.sampled_from([1e-320, 0.0499, 0.05, 1000.0]),
        "alpha": st.floats(-0.5, 1.5),
        "epochs": st.integers(-3, 20_000),
        "teacher_epochs": st.none() | st.integers(-3, 20_000),
        "batch_size": st.integers(-1, 2_000_000),
        "lr": st.floats(-1, 20),
        "weight_decay": st.floats(-1, 2),
        "seed": st.integers(-5, 2**32),
        "val_fraction": st.floats(-0.2, 0.8),
        "image_size": st.integers(0, 300),
        "student_fraction": st.floats(-0.5, 1.5),
        "standardize": st.booleans(),
        "teacher_checkpoint": st.none() | st.sampled_from(["", "w.safetensors", "w.pt", "/etc/passwd", "a\x00b"]),
        "data_dir": st.none() | st.text(max_size=10),
        "label": st.text(max_size=10),
        "options": st.none()
        | st.dictionaries(
            st.sampled_from(["dkd_beta", "dkd_warmup", "dist_tau", "beta", "ctkd_ramp", "fitnet_student_tap"]),
            st.floats(-1, 2000) | st.integers(-1, 20_000) | st.sampled_from(["middle", "layer2", "", " "]),
            max_size=2,
        ),
    }.get(field)
    if field in CHOICES:
        plausible = st.sampled_from(CHOICES[field])
    assert plausible is not None, f"a new RunConfig field, {field}: give it plausible values here"
    return plausible | anything


unknown_key = st.dictionaries(st.sampled_from(["epoch", "T", "lr_max"]), anything, min_size=1, max_size=1)
configs = st.tuples(
    st.fixed_dictionaries({}, optional={f: value_for(f) for f in FIELDS}),
    st.just({}) | st.just({}) | st.just({}) | unknown_key,
).map(lambda d: {**d[0], **d[1]})


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(configs)
def test_any_run_config_is_accepted_or_refused_naming_its_field(data):
    try:
        cfg = RunConfig.from_dict(data)
    except ConfigError as e:
        event(f"refused: {e.field}")
        assert e.field in FIELDS or e.field in data, e.field
        assert str(e).startswith(f"{e.field}: ") and len(str(e).splitlines()) == 1
        return
    event("accepted")
    assert 0.05 <= cfg.temperature <= 1000  # the floor: below it soft targets are one-hot, then NaN
    assert RunConfig.from_json(cfg.to_json()) == cfg  # what is accepted round-trips
    for k, v in data.items():
        assert getattr(cfg, k) == v


def flag_value(flag: str):
    field, kind = cli.TRAIN_FLAGS[flag]
    text = st.text(st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00"), max_size=8)
    if field in CHOICES:
        return st.sampled_from(CHOICES[field]) | text
    if kind is int:
        return st.integers(-5, 30).map(str) | st.sampled_from(["1.5", "1e3", "", "ten", "0x10"]) | text
    if kind is float:
        return st.floats(-2, 30).map(repr) | st.sampled_from(["nan", "inf", "-inf", "1e-3", "", "0"]) | text
    if kind is bool:  # a switch takes no value
        return st.none()
    if field == "teacher_checkpoint":
        return st.sampled_from(["w.safetensors", "/etc/passwd", "model.pt"]) | text
    return text  # data_dir


argvs = st.lists(
    st.sampled_from(list(cli.TRAIN_FLAGS)).flatmap(lambda f: flag_value(f).map(lambda v: [f] if v is None else [f, v])),
    max_size=6,
).map(lambda pairs: [x for p in pairs for x in p])
extras = st.sampled_from([[], [], [], ["--epochs"], ["--no-such-flag", "1"], ["stray"]])


@settings(
    max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)
@given(argvs, extras)
def test_any_train_flags_are_accepted_or_refused_in_one_line_with_exit_code_2(capsys, argv, extra):
    if "--dataset" not in argv:
        argv = ["--dataset", "digits", *argv]  # the default; stated so no example reaches for a download
    code = cli.main(["train", *argv, *extra, "--dry-run"])
    out, err = capsys.readouterr()
    if code == 0:
        event("accepted")
        cfg = RunConfig.from_dict(json.loads(out))
        assert not err and cfg.dataset in OFFLINE_SETS
        return
    assert code == 2, (argv, extra, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    named = NAMES_A_FLAG.match(lines[0])
    event(f"refused: {named.group(2) if named else 'unrecognized'}")
    assert (named and named.group(2) in cli.TRAIN_FLAGS) or lines[0].startswith("error: unrecognized arguments"), lines[
        0
    ]


NAMES_A_FLAG = re.compile(r"^error: (argument )?(--[a-z-]+):")

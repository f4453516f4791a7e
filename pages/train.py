"""Train: pick the data, the pair, the method and its numbers; start a run in the background."""

import pandas as pd
import streamlit as st

from kd import plots, service
from kd.errors import KDError
from pages.common import check_store, method_setting, plain, setting, show_error

D = service.RunConfig()  # defaults


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min" if seconds < 5400 else f"{seconds / 3600:.1f} h"


st.title("Train")
check_store()  # a store that cannot be used is said at once

# The form starts from the URL's settings (a shared link), else the last ones used here, else the
# defaults; every change is written back to both, so a link reopens the same setup.
FORM = "train_form"
linked, refused_in_link = service.form_from_query({k: v for k, v in st.query_params.to_dict().items() if k != "seeds"})
start = {**st.session_state.get(FORM, {}), **linked}
if refused_in_link:
    st.warning("This link's settings were not all used: " + plain("; ".join(refused_in_link)))

# -- data ------------------------------------------------------------------------------
UPLOAD = "upload my data…"
FOLDER = "my data on this machine…"
KINDS = (
    "a .zip of images (one folder per class, or train/ val/ test/ of those), a table (.csv, .parquet) "
    "or NumPy arrays (.npz: x, y)"
)
left, right = st.columns(2)
with left:
    registered = service.datasets()
    listed = list(registered) + [UPLOAD, FOLDER]
    choice = st.selectbox(
        "Data set",
        listed,
        index=listed.index(start["dataset"]) if start.get("dataset") in listed else 0,
        key="train_dataset",  # keyed: the starting index may change while the page is open
        format_func=lambda k: k if k in (UPLOAD, FOLDER) else f"{k} — {registered[k]}",
    )
    dataset, image_size, data_dir = choice, D.image_size, None
    if choice in registered and service.needs_data_dir(choice):  # read from a folder (downloaded when online)
        data_dir = setting("data_dir", start=start)
    if choice == FOLDER:  # the CLI's folder:PATH, table:PATH, npz:PATH
        path = st.text_input(
            "Folder or file",
            placeholder="/data/my_images, /data/my_table.csv or /data/my_arrays.npz",
            help="on the machine this dashboard runs on: a folder of images (one sub-folder per class, or "
            "train/ val/ test/ of those), a table (.csv, .parquet) or NumPy arrays (.npz: x, y)",
        )
        dataset = service.own_data_name(path) if path.strip() else None
    if choice == UPLOAD:
        up = st.file_uploader("Your data", type=["zip", "csv", "parquet", "npz"], help=KINDS)
        dataset = None
        if up is not None:
            try:
                if up.name.lower().endswith(".zip"):
                    dataset = service.save_image_zip(up.getvalue(), up.name)
                else:
                    dataset = service.save_data_file(up.getvalue(), up.name)
            except KDError as e:
                show_error(e)
    label_column, fill_missing = "", "none"
    if dataset and dataset.startswith("folder:"):
        image_size = setting("image_size")
    if dataset and dataset.startswith("table:"):
        try:
            columns = service.table_columns(dataset)
        except KDError as e:
            show_error(e)
            columns = []
        default = start.get("label") or ("label" if "label" in columns else (columns[-1] if columns else ""))
        pick, fill_col = st.columns(2)
        label_column = (
            pick.selectbox(
                "Label column",
                columns,
                index=columns.index(default) if default in columns else 0,
                help="the column holding each row's class; the others are the inputs",
                key="train_label",
            )
            or ""
        )
        fill_missing = setting("fill_missing", fill_col, start=start)
try:
    spec = service.dataset_spec(dataset, data_dir, image_size, label_column, fill_missing) if dataset else None
except KDError as e:
    show_error(e)
    spec = None
if spec is None:
    if not dataset:
        st.info("Choose a data set to see which models fit it.")
    st.stop()  # else the refusal above says what to change
with right:
    shape = "×".join(map(str, spec.input_shape))
    st.caption(
        f"**{spec.num_classes} classes**, inputs {shape}: {plain(', '.join(spec.class_names[:12]))}"
        + ("…" if spec.num_classes > 12 else "")
    )
if service.is_own_data(dataset):
    with st.expander(f"Your data: {plain(service.dataset_name(dataset))}", expanded=True):
        try:
            seen = service.data_summary(dataset, label_column, fill_missing)
        except KDError as e:
            show_error(e)
            seen = None
        if seen:
            for note in seen["notes"]:
                st.caption(plain(note))
            counts = pd.DataFrame(seen["counts"], index=seen["class_names"])
            counts.loc["all classes"] = counts.sum()
            st.dataframe(counts, width="content")
            if "rows" in seen:
                st.dataframe(seen["rows"], hide_index=True)
            elif seen["layout"] == "signal":
                st.plotly_chart(plots.signals_figure(*seen["examples"], seen["class_names"]), key="train_signals")
            else:
                shown = seen.get("files") or [
                    (seen["class_names"][y], [plots.image_array(x)]) for x, y in zip(*seen["examples"])
                ]
                cols = st.columns(min(8, len(shown)))
                for col, (name, images) in zip(cols * 8, shown[:16]):
                    col.image([str(i) if not hasattr(i, "shape") else i for i in images], caption=plain(name), width=64)


# -- models ------------------------------------------------------------------------------
@st.cache_data(show_spinner=False)
def fitting_models(_spec, shape: tuple, classes: int) -> dict[str, int]:
    """Parameter count of every architecture that can take this data set's inputs, cached by the
    inputs' shape and the number of classes (Streamlit does not hash an argument named _...)."""
    return service.models_for(_spec)


fits = fitting_models(spec, spec.input_shape, spec.num_classes)
keys = list(fits)
architectures = service.architectures()
label = lambda k: f"{k} · {fits[k]:,} params — {architectures[k]}"
with left:
    first = start.get("teacher", D.teacher)
    teacher = st.selectbox(
        "Teacher", keys, index=keys.index(first) if first in keys else 0, format_func=label, key="train_teacher"
    )
with right:
    first = start.get("student", D.student)
    student = st.selectbox(
        "Student", keys, index=keys.index(first) if first in keys else 0, format_func=label, key="train_student"
    )
refused = [k for k in architectures if k not in fits]
if refused:
    st.caption(f"Not offered for {shape} inputs: {', '.join(refused)}.")
if fits[student] >= fits[teacher]:
    st.warning(f"The student ({fits[student]:,} params) is not smaller than the teacher ({fits[teacher]:,}).")

# -- method and its numbers, with the loss they make ------------------------------------
st.subheader("Distillation")
cols = st.columns(3)
described = {name: service.field(name).knob for name in ("method", "temperature", "alpha")}
offered = service.methods()
method = cols[0].selectbox(
    described["method"].label,
    list(offered),
    index=list(offered).index(start.get("method", D.method)) if start.get("method", D.method) in offered else 0,
    format_func=lambda k: f"{k} — {offered[k].description}",
    help=described["method"].help,
    key="train_method",
)
used = offered[method].knobs
temperature, alpha = start.get("temperature", D.temperature), start.get("alpha", D.alpha)
if "temperature" in used:  # knobs a method does not use are not shown
    temperature = cols[1].slider(
        described["temperature"].label,
        0.5,
        20.0,
        min(max(float(temperature), 0.5), 20.0),
        0.5,
        help=described["temperature"].help,
        key="train_temperature",
    )
if "alpha" in used:
    alpha = cols[2].slider(
        described["alpha"].label, 0.0, 1.0, float(alpha), 0.05, help=described["alpha"].help, key="train_alpha"
    )
chosen = dict(method=method, temperature=float(temperature), alpha=float(alpha))
if "standardize" in used:
    chosen["standardize"] = setting("standardize", start=start)
own = offered[method].options  # the method's own knobs, from its file
if own:
    cols = st.columns(max(3, len(own)))
    pair = {"student": student, "teacher": teacher}
    chosen["options"] = {  # a knob naming a layer offers that model's taps
        name: method_setting(
            name,
            col,
            ["middle"] + service.taps(pair[opt.tap_of], spec) if opt.tap_of else None,
            start=start,
        )
        for (name, opt), col in zip(own.items(), cols)
    }
refused = None
try:  # the chosen method's loss with the chosen numbers, right under the widgets that set them
    latex, meaning = service.method_formula(service.RunConfig(**chosen, teacher=teacher, student=student), spec)
    st.latex(latex)
    st.caption(meaning)
except KDError as e:  # e.g. attention transfer on an MLP: said here, and nothing can start
    refused = e
    show_error(e)

st.subheader("Training")
images = len(spec.input_shape) == 3
special = {  # fields whose widget depends on this machine or this data set
    "device": dict(options=service.devices()),
    "augment": dict(
        disabled=not images, format_func={"none": "none", "teacher": "teacher only (Hinton)", "all": "every model"}.get
    ),
    "student_fraction": dict(
        format_func=lambda f: "all the training set" if f == 1 else f"{f:.0%} of the training set"
    ),
}
training = service.fields_in("training")  # every other field, from its declaration
for row in range(0, len(training), 4):
    for col, name in zip(st.columns(4), training[row : row + 4]):
        chosen[name] = setting(name, col, start=start, **special.get(name, {}))
if not images:
    chosen["augment"] = "none"

# -- the teacher: train it, reuse one, or upload one ----------------------------------------
st.subheader("Teacher")
source = st.radio(
    "Teacher weights",
    ["train it", "reuse a teacher from an earlier run", "upload a .safetensors file"],
    horizontal=True,
    label_visibility="collapsed",
)
checkpoint = None
if source.startswith("reuse"):
    earlier = service.teachers_for(dataset, teacher)
    if not earlier:
        st.info(f"No earlier run has a {teacher} teacher trained on {plain(dataset)}.")
    else:
        pick = st.selectbox(
            "Earlier run",
            earlier,
            format_func=lambda r: f"{r.id} · teacher test accuracy {100 * r.models['teacher']['accuracy']:.2f} %",
        )
        checkpoint = str(service.weights_file(pick.id, "teacher"))
elif source.startswith("upload"):
    up = st.file_uploader(f"Weights for {teacher} (.safetensors)", type=["safetensors"])
    if up is not None:
        try:
            checkpoint = service.save_teacher_file(up.getvalue())
        except KDError as e:
            show_error(e)

ready = (source.startswith("train") or checkpoint is not None) and refused is None
SEEDS = [1, 3, 5]
try:  # 3 seeds by default where they cost less than twice one (the teacher trains once)
    cfg = service.RunConfig(
        dataset=dataset,
        data_dir=data_dir,
        image_size=int(image_size),
        label=label_column,
        fill_missing=fill_missing,
        teacher=teacher,
        student=student,
        teacher_checkpoint=checkpoint,
        **chosen,
    )
    costs = service.seeds_cost(cfg, tuple(SEEDS[1:]))
except KDError as e:
    cfg, costs, refused = None, {}, refused or e
seeds_wanted = st.query_params.get("seeds") or st.session_state.get("train_seeds")
n_seeds = st.radio(
    "Seeds",
    SEEDS,
    index=SEEDS.index(int(seeds_wanted)) if seeds_wanted in ("1", "3", "5") else 1 if costs.get(3, 2) < 2 else 0,
    horizontal=True,
    format_func=lambda n: f"{n}" if n == 1 or n not in costs else f"{n} (about {costs[n]:.1f}× the time of one)",
    help="Train the students with several seeds (the teacher once) to see how much of the gain is noise: "
    "the results then show mean ± std and each seed.",
    key="train_seeds_radio",
)
if cfg is not None:  # the form as it stands: kept for the next visit, and in the URL for a link
    st.session_state[FORM] = {k: v for k, v in cfg.to_dict().items() if k != "teacher_checkpoint"}
    st.session_state["train_seeds"] = str(n_seeds)
    st.query_params.from_dict({**service.form_to_query(cfg), "seeds": str(n_seeds)})
go, when = st.columns([1, 4], vertical_alignment="center")
estimate = service.estimate_seconds(cfg) if cfg is not None else None
if estimate is not None:
    seconds, like = estimate
    seconds *= costs.get(n_seeds, n_seeds) if n_seeds > 1 else 1
    when.caption(
        ("Under a second" if seconds < 1 else f"About {_duration(seconds)}")
        + f" of training, judged from {plain(service.names([like])[like.id])} "
        f"({like.id}: same data, pair and batch size), plus a few seconds to start and measure."
    )
elif cfg is not None:
    when.caption("No estimate of the time yet: no earlier run of this pair on this data set.")
if go.button("Start training", type="primary", disabled=not ready):
    try:
        if cfg is None:
            raise refused
        if n_seeds == 1:
            run_id = service.start(cfg)  # checked first: the pair, the method with every number, the teacher file
        else:
            sweep_id = service.start_seeds(cfg, n_seeds)  # the same checks, for each seed
    except KDError as e:
        show_error(e)
    else:
        if n_seeds == 1:
            st.switch_page("pages/live.py", query_params={"run": run_id})
        st.switch_page("pages/sweep.py", query_params={"sweep": sweep_id})

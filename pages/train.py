"""Train: pick the data, the pair, the method and its numbers; start a run in the background."""

import streamlit as st

from kd import data, jobs, methods, models, uploads
from kd.config import RunConfig, knobs
from kd.errors import KDError
from kd.features import tap_names
from kd.methods import METHODS
from kd.trainer import available_devices
from pages.common import method_setting, plain, setting, show_error, store

D = RunConfig()  # defaults
st.title("Train")
store()  # a store that cannot be used is said here, before the form is filled in

# -- data ------------------------------------------------------------------------------
UPLOAD = "upload a .zip of my images…"
FOLDER = "a folder of my images on this machine…"
left, right = st.columns(2)
with left:
    choice = st.selectbox(
        "Data set",
        data.DATASETS.keys() + [UPLOAD, FOLDER],
        format_func=lambda k: k if k in (UPLOAD, FOLDER) else f"{k} — {data.DATASETS.description(k)}",
    )
    dataset, image_size, data_dir = choice, D.image_size, None
    if (
        choice not in (UPLOAD, FOLDER) and data.DATASETS.get(choice).needs_dir
    ):  # read from a folder (downloaded when online)
        data_dir = setting("data_dir")
    if choice == FOLDER:  # the CLI's folder:PATH
        path = st.text_input(
            "Folder",
            placeholder="/data/my_images",
            help="one sub-folder of images per class, on the machine this dashboard runs on",
        )
        image_size = setting("image_size")
        dataset = f"folder:{path.strip()}" if path.strip() else None
    if choice == UPLOAD:
        archive = st.file_uploader("Images: one folder per class, zipped", type=["zip"])
        image_size = setting("image_size")
        dataset = None
        if archive is not None:
            try:
                dataset = "folder:" + str(uploads.save_image_zip(archive.getvalue(), store().root))
            except KDError as e:
                show_error(e)
try:
    spec = data.spec(dataset, data_dir, image_size) if dataset else None
except KDError as e:
    show_error(e)
    spec = None
if spec is None:
    st.info("Choose a data set to see which models fit it.")
    st.stop()
with right:
    shape = "×".join(map(str, spec.input_shape))
    st.caption(
        f"**{spec.num_classes} classes**, inputs {shape}: {plain(', '.join(spec.class_names[:12]))}"
        + ("…" if spec.num_classes > 12 else "")
    )


# -- models ------------------------------------------------------------------------------
@st.cache_data(show_spinner=False)
def fitting_models(shape: tuple, classes: int) -> dict[str, int]:
    """Parameter count of every architecture that can take this data set's inputs."""
    out = {}
    for key in models.MODELS.keys():
        try:
            out[key] = models.param_count(key, shape, classes)
        except KDError:
            pass
    return out


fits = fitting_models(spec.input_shape, spec.num_classes)
keys = list(fits)
label = lambda k: f"{k} · {fits[k]:,} params — {models.MODELS.description(k)}"
with left:
    teacher = st.selectbox("Teacher", keys, index=keys.index(D.teacher) if D.teacher in keys else 0, format_func=label)
with right:
    student = st.selectbox("Student", keys, index=keys.index(D.student) if D.student in keys else 0, format_func=label)
refused = [k for k in models.MODELS.keys() if k not in fits]
if refused:
    st.caption(f"Not offered for {shape} inputs: {', '.join(refused)}.")
if fits[student] >= fits[teacher]:
    st.warning(f"The student ({fits[student]:,} params) is not smaller than the teacher ({fits[teacher]:,}).")

# -- method and its numbers, with the loss they make ------------------------------------
st.subheader("Distillation")
cols = st.columns(3)
described = knobs()
method = cols[0].selectbox(
    described["method"].label,
    METHODS.keys(),
    index=METHODS.keys().index(D.method),
    format_func=lambda k: f"{k} — {METHODS.description(k)}",
    help=described["method"].help,
)
uses_teacher, used = METHODS.get(method).uses_teacher, METHODS.get(method).knobs
temperature, alpha = D.temperature, D.alpha
if "temperature" in used:  # knobs a method does not use are not shown
    temperature = cols[1].slider(
        described["temperature"].label, 0.5, 20.0, D.temperature, 0.5, help=described["temperature"].help
    )
if "alpha" in used:
    alpha = cols[2].slider(described["alpha"].label, 0.0, 1.0, D.alpha, 0.05, help=described["alpha"].help)
chosen = dict(method=method, temperature=float(temperature), alpha=float(alpha))
if "standardize" in used:
    chosen["standardize"] = setting("standardize")
own = getattr(METHODS.get(method), "options", {})  # the method's own knobs, from its file
if own:
    cols = st.columns(max(3, len(own)))
    pair = {"student": student, "teacher": teacher}
    chosen["options"] = {  # a knob naming a layer offers that model's taps
        name: method_setting(
            name,
            col,
            ["middle"] + tap_names(pair[opt.tap_of], spec.input_shape, spec.num_classes) if opt.tap_of else None,
        )
        for (name, opt), col in zip(own.items(), cols)
    }
refused = None
try:  # the chosen method's loss with the chosen numbers, right under the widgets that set them
    bound = methods.check(RunConfig(**chosen, teacher=teacher, student=student), spec.input_shape, spec.num_classes)
    latex, meaning = bound.formula()
    st.latex(latex)
    st.caption(meaning)
except KDError as e:  # e.g. attention transfer on an MLP: said here, and nothing can start
    refused = e
    show_error(e)

st.subheader("Training")
images = len(spec.input_shape) == 3
special = {  # fields whose widget depends on this machine or this data set
    "device": dict(options=available_devices()),
    "augment": dict(
        disabled=not images, format_func={"none": "none", "teacher": "teacher only (Hinton)", "all": "every model"}.get
    ),
    "student_fraction": dict(
        format_func=lambda f: "all the training set" if f == 1 else f"{f:.0%} of the training set"
    ),
}
training = [name for name, k in knobs().items() if k.section == "training"]  # every other field, from its declaration
for row in range(0, len(training), 4):
    for col, name in zip(st.columns(4), training[row : row + 4]):
        chosen[name] = setting(name, col, **special.get(name, {}))
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
    earlier = [
        r
        for r in store().runs()
        if r.config["dataset"] == dataset
        and r.config["teacher"] == teacher
        and "teacher" in r.models
        and store().weights_path(r.id, "teacher").exists()
    ]
    if not earlier:
        st.info(f"No earlier run has a {teacher} teacher trained on {plain(dataset)}.")
    else:
        pick = st.selectbox(
            "Earlier run",
            earlier,
            format_func=lambda r: f"{r.id} · teacher test accuracy {100 * r.models['teacher']['accuracy']:.2f} %",
        )
        checkpoint = str(store().weights_path(pick.id, "teacher"))
elif source.startswith("upload"):
    up = st.file_uploader(f"Weights for {teacher} (.safetensors)", type=["safetensors"])
    if up is not None:
        try:
            checkpoint = str(uploads.save_checkpoint(up.getvalue(), store().root))
        except KDError as e:
            show_error(e)

ready = (source.startswith("train") or checkpoint is not None) and refused is None
if st.button("Start training", type="primary", disabled=not ready):
    try:
        cfg = RunConfig(
            dataset=dataset,
            data_dir=data_dir,
            image_size=int(image_size),
            teacher=teacher,
            student=student,
            teacher_checkpoint=checkpoint,
            **chosen,
        )
        from kd.trainer import build_pair, check_teacher_checkpoint

        build_pair(cfg, spec)  # the pair and the method with every number chosen (e.g. rkd's batch size)
        check_teacher_checkpoint(cfg, spec)  # shapes, values, dtypes: refused here, not in the worker
        run_id = jobs.start(cfg, store())
    except KDError as e:
        show_error(e)
    else:
        st.switch_page("pages/live.py", query_params={"run": run_id})

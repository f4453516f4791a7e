"""Results of one run (?run=ID): teacher vs student alone vs distilled student."""

from pathlib import Path

import streamlit as st

from kd import plots, service
from kd.errors import KDError
from pages.common import check_store, current_run, plain, run_label, show_error

st.title("Results")
check_store()  # a store that cannot be used is said at once
run = current_run()
if run is None:
    finished = [r for r in service.runs() if r.models]
    if not finished:
        st.info("No finished run yet: start one on the Train page.")
        st.stop()
    run = st.selectbox("Run", finished, format_func=run_label)
    st.query_params["run"] = run.id
st.caption(plain(run_label(run)))
if not run.models:
    st.info(f"This run has no results yet (status: {run.state}).")
    st.page_link("pages/live.py", label="Watch it live", icon=":material/monitoring:", query_params={"run": run.id})
    st.stop()

said = service.headline(run)
if said is not None:
    tone, sentence = said
    {"good": st.success, "neutral": st.info, "bad": st.warning}[tone](sentence)
    note = service.no_gain_note(run)
    if note:
        st.caption(note)
        st.page_link("pages/sweep.py", label="Sweep T and α on this data", icon=":material/grid_on:")
if run.state != "done":
    said = {"queued": "is queued", "running": "is still running", "interrupted": "was interrupted"}
    st.warning(f"This run {said.get(run.state, run.state)}: the models below are what it had.")

siblings = service.sweep_of(run.id)  # a run that is one seed of several: the spread first
if siblings and len(siblings[1]["seeds"]) > 1 and siblings[1]["gain_mean"] is not None:
    sweep_id, cell = siblings
    seeds = service.seed_runs(cell)
    st.subheader(f"Over {len(seeds)} seeds")
    gain, std = 100 * cell["gain_mean"], 100 * cell["gain_std"]
    st.markdown(
        f"Distilled student **{100 * cell['accuracy_mean']:.2f} ± {100 * cell['accuracy_std']:.2f} %**; "
        f"gain over the student alone of the same seed **{gain:+.2f} ± {std:.2f} points** (mean ± std). "
        f"This page shows seed {run.config['seed']}."
    )
    st.plotly_chart(plots.seeds_figure(seeds), key="seeds")
    st.page_link(
        "pages/sweep.py",
        label="Every seed, on the Sweep page",
        icon=":material/grid_on:",
        query_params={"sweep": sweep_id},
    )
    st.subheader(f"Seed {run.config['seed']}")

st.plotly_chart(plots.comparison_figure(run.models), key="comparison")
st.dataframe(plots.metrics_table(run.models), hide_index=True, width="stretch")
st.caption(
    "test acc: on the test set; MB: the weights on disk; MFLOPs/ex: one example's forward pass; "
    "ms @1, ms @256: median CPU time of one forward pass on one thread at batch 1 and 256, the "
    "models timed in turn; IQR @256: the middle half of the timed rounds (the chart's whiskers); agrees: "
    "same top-1 class as the teacher; ECE: calibration error."
)

st.subheader("Where they err")
names = [n for n in plots.MODELS if n in run.models]
spec = service.run_spec(run)  # names and shape without loading the data; None for a folder that is gone
class_names = list(spec.class_names) if spec else None
cols = st.columns(len(names))
for col, name in zip(cols, names):
    matrix = run.models[name]["confusion"]
    labels = class_names or [str(i) for i in range(len(matrix))]
    col.plotly_chart(plots.confusion_figure(matrix, labels, plots.LABELS[name]), key=f"confusion-{name}")

left, right = st.columns(2)
with left:
    st.subheader("Calibration")
    st.plotly_chart(plots.reliability_figure(run.models), key="reliability")
with right:
    st.subheader("Agreement with the teacher")
    for name in ("baseline", "student"):
        m = run.models.get(name)
        if m and m.get("agreement") is not None:
            st.metric(f"{plots.LABELS[name]}: same top-1 class as the teacher", f"{100 * m['agreement']:.1f} %")

if spec is not None and spec.input_shape == (2,):  # the 2-D sets: draw what each model decides where
    st.subheader("Decision boundaries")
    regions = service.decision_regions(run)
    st.plotly_chart(
        plots.boundary_figure(
            regions["xx"],
            regions["yy"],
            regions["predictions"],
            regions["points"],
            regions["labels"],
            regions["class_names"],
        ),
        key="boundaries",
    )


# -- deploy: the model as a file, checked against PyTorch -----------------------------------------
st.subheader("Deploy")
st.caption(
    "Export a model as a file for another program, checked first: the file runs in its own runtime "
    "(ONNX in onnxruntime) on every test example, against PyTorch."
)
which = st.radio(
    "Model",
    [m for m in plots.MODELS if m in run.models][::-1],
    format_func=plots.LABELS.get,
    horizontal=True,
    key="deploy_model",
)
cols = st.columns(len(service.EXPORT_FORMATS))
for col, (fmt, title) in zip(cols, service.EXPORT_FORMATS.items()):
    if col.button(
        f"Export {title}",
        key=f"deploy_{fmt}",
        disabled=run.state in service.ACTIVE,
        help="checked on every test example and timed" + ("; an int8 copy too" if fmt == "onnx" else ""),
    ):
        with st.spinner(f"Writing, checking and timing the {title} file…"):
            try:
                service.export_model(run.id, which, fmt)
            except KDError as e:
                show_error(e)
run = service.get_run(run.id)  # with what was just exported
done = service.exports(run).get(which, {})


def offer(col, label: str, path: str, key: str) -> None:
    try:
        with open(path, "rb") as f:
            col.download_button(label, f.read(), file_name=Path(path).name, key=key)
    except OSError as e:  # removed meanwhile
        col.caption(plain(f"{Path(path).name} cannot be read ({e.strerror or e})"))


for fmt, r in done.items():
    left, right = st.columns([3, 1])
    verdict = "computes what PyTorch computes" if r["ok"] else "DIFFERS from PyTorch: not offered"
    (left.success if r["ok"] else left.error)(
        f"**{service.EXPORT_FORMATS[fmt]}**, {r['bytes'] / 1e6:.3g} MB: {verdict} on {r['test_examples']:,} test "
        f"examples (top-1 agrees on {100 * r['agreement']:.2f} %, largest logit difference {r['max_abs_diff']:.1e})."
    )
    if r["ok"]:
        offer(right, "Download", r["path"], f"download_{fmt}")
    q = r.get("int8") or {}
    if q.get("error"):
        left.warning(plain(f"No int8 copy: {q['error']}"))
    elif q and r["ok"] and Path(q["path"]).is_file():
        left, right = st.columns([3, 1])
        left.info(
            f"**int8 copy**, {q['bytes'] / 1e6:.3g} MB: test accuracy {100 * q['accuracy']:.2f} % against "
            f"{100 * r['accuracy']:.2f} % in fp32; the same top-1 class as fp32 on {100 * q['agreement']:.2f} %."
        )
        offer(right, "Download int8", q["path"], f"download_{fmt}_int8")
    if r.get("latency_ms"):
        st.dataframe(plots.latency_table(r), hide_index=True, width="stretch")
        st.caption(
            f"The {service.EXPORT_FORMATS[fmt]} file's latency beside PyTorch's, in ms, p50 / p95 of one call "
            "after 3 warm-up calls, on the CPU of the machine this dashboard runs on; one thread, then every core. "
            "The file takes inputs as the run's models do: (raw - mean) / std, with mean and std in its metadata."
        )

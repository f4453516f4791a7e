"""Home: what distillation is, in four lines and one picture, and two one-click demos."""

import streamlit as st

from kd import data, jobs, models
from kd.config import FEW_LABELS, RunConfig
from kd.errors import KDError
from kd.metrics import few_labels_gains
from pages.common import show_error, store

st.title("Distill Lab")
store()  # a store that cannot be used is said at once
text, picture = st.columns([3, 2])
with text:
    st.markdown(
        "- A big **teacher** network is trained on the labels.\n"
        "- A small **student** learns from the labels *and* from the teacher's probabilities "
        "softened by a temperature T, which say how alike the classes look to the teacher.\n"
        "- The same student is also trained **alone**, from the same start, for comparison.\n"
        "- You compare all three: accuracy, size, FLOPs, latency, agreement, calibration."
    )
with picture:
    st.graphviz_chart("""
    digraph { rankdir=LR; node [shape=box, style="rounded,filled", fontname="sans-serif", color=white];
      x [label="image", fillcolor="#eeeeee"];
      t [label="teacher\\n(large)", fillcolor="#0072B2", fontcolor=white];
      s [label="student\\n(small)", fillcolor="#009E73", fontcolor=white];
      y [label="label y", fillcolor="#eeeeee"];
      x -> t; x -> s;
      t -> s [label=" softmax(t/T)", fontname="sans-serif", fontsize=10];
      y -> s [label=" CE", fontname="sans-serif", fontsize=10];
    }""")

st.latex(
    r"\mathcal{L} = (1-\alpha)\,\mathrm{CE}(s, y) + \alpha\,T^2\,"
    r"\mathrm{KL}\big(\mathrm{softmax}(t/T)\,\|\,\mathrm{softmax}(s/T)\big)"
)
cfg, few = RunConfig(), RunConfig(**FEW_LABELS)
digits = data.spec(cfg.dataset)
shrink = models.param_count(cfg.teacher, digits.input_shape, digits.num_classes) / models.param_count(
    cfg.student, digits.input_shape, digits.num_classes
)
st.subheader("Quick demos")


def start(demo: RunConfig) -> None:
    try:
        run_id = jobs.start(demo, store())
    except KDError as e:
        show_error(e)
    else:
        st.switch_page("pages/live.py", query_params={"run": run_id})


quick, scarce = st.columns(2)
with quick:
    st.markdown(
        f"**Compress.** Digits (8×8, bundled), teacher `{cfg.teacher}` → student `{cfg.student}`, "
        f"T = {cfg.temperature:g}, α = {cfg.alpha:g}, {cfg.epochs} epochs each: a few seconds on a CPU. "
        f"The student has 1/{shrink:.0f} of the teacher's parameters; with all the labels, the student "
        "alone does about as well as the distilled one."
    )
    if st.button("Run the quick demo", type="primary", icon=":material/bolt:"):
        start(cfg)
with scarce:
    st.markdown(
        f"**Few labels.** The same pair, but the students learn from {few.student_fraction:.0%} of the "
        "training images (63, about 6 a class) while the teacher saw them all: its soft targets carry "
        "what a few labels cannot (Hinton et al. 2015, §5). About 10 s; distilled student "
        f"{few_labels_gains()} above the student alone over 3 seeds."
    )
    if st.button("Run the few-labels demo", icon=":material/school:"):
        start(few)
st.page_link("pages/train.py", label="Or choose everything yourself on the Train page", icon=":material/tune:")

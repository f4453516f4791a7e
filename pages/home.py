"""Home: what distillation is, in four lines and one picture, and a one-click quick demo."""
import streamlit as st

from kd import jobs
from kd.config import RunConfig
from kd.errors import KDError
from pages.common import show_error, store

st.title("Distill Lab")
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

st.latex(r"\mathcal{L} = (1-\alpha)\,\mathrm{CE}(s, y) + \alpha\,T^2\,"
         r"\mathrm{KL}\big(\mathrm{softmax}(t/T)\,\|\,\mathrm{softmax}(s/T)\big)")
cfg = RunConfig()
st.subheader("Quick demo")
st.markdown(f"Digits (8×8, bundled), teacher `{cfg.teacher}` → student `{cfg.student}`, T = {cfg.temperature:g}, "
            f"α = {cfg.alpha:g}, {cfg.epochs} epochs each: a few seconds on a CPU.")
if st.button("Run the quick demo", type="primary", icon=":material/bolt:"):
    try:
        run_id = jobs.start(cfg, store())
    except KDError as e:
        show_error(e)
    else:
        st.switch_page("pages/live.py", query_params={"run": run_id})
st.page_link("pages/train.py", label="Or choose everything yourself on the Train page", icon=":material/tune:")

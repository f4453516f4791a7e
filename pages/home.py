"""Home: what distillation is, and how to run it."""
import streamlit as st

from kd.config import RunConfig

st.title("Distill Lab")
st.markdown(
    "**Knowledge distillation** trains a small *student* network to imitate a large *teacher*: "
    "besides the true labels, the student learns from the teacher's softened probabilities, "
    "which say how similar the classes look to the teacher (the \"dark knowledge\"). "
    "Distill Lab trains the teacher, the student alone and the distilled student on the same "
    "data, and compares their accuracy, size, FLOPs and latency."
)
st.latex(r"\mathcal{L} = (1-\alpha)\,\mathrm{CE}(s, y) + \alpha\,T^2\,"
         r"\mathrm{KL}\big(\mathrm{softmax}(t/T)\,\|\,\mathrm{softmax}(s/T)\big)")
cfg = RunConfig()
st.markdown(
    f"Train from a terminal with every default (data set `{cfg.dataset}`, teacher `{cfg.teacher}`, "
    f"student `{cfg.student}`, T = {cfg.temperature:g}, alpha = {cfg.alpha:g}):"
)
st.code("python -m kd train", language="bash")
st.caption("Runs are stored under ./runs (or $KD_RUNS_DIR) and listed on the Runs page.")

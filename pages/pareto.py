"""Pareto: accuracy against size for every model in the store (teachers, students alone,
distilled students, sweep cells), the frontier drawn; click a point for its run."""

import streamlit as st

from kd import plots, service
from pages.common import check_store, plain

st.title("Pareto")
check_store()
frame = plots.pareto_frame(r for r in service.runs() if r.models)
if frame.empty:
    st.info("No finished runs yet: train one on the Train page, or a grid on the Sweep page.")
    st.stop()
counts = frame["dataset"].value_counts()
a, b = st.columns([2, 3])
dataset = a.selectbox(
    "Data set",
    list(counts.index),
    format_func=lambda d: f"{d} ({counts[d]} models)",
    help="accuracies compare within one data set",
)
x = b.radio("Against", list(plots.PARETO_AXES), format_func=plots.PARETO_AXES.get, horizontal=True)
shown = frame[frame["dataset"] == dataset]
picked = st.plotly_chart(plots.pareto_figure(shown, x), on_select="rerun", selection_mode="points", key="pareto")
st.caption(
    "Each point is one model of one run (a teacher or student alone that several runs share appears once). "
    "The dotted line is the frontier: no model is both smaller and more accurate than a point on it. "
    "Click a point to open its run."
)
points = picked.selection.points if picked and picked.selection else []
run_id = points[0].get("customdata") if points else None
if isinstance(run_id, list):
    run_id = run_id[0]
if run_id:
    run = service.get_run(str(run_id))
    if run is not None:
        st.page_link(
            "pages/results.py",
            label=f"Open run {plain(run.id)}",
            icon=":material/leaderboard:",
            query_params={"run": run.id},
        )

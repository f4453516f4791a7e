"""Runs: the history. Sort, overlay several runs' curves, compare, delete, download."""

import json

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from kd import plots, service
from kd.errors import KDError
from pages.common import check_store, run_label, show_error

st.title("Runs")
check_store()  # a store that cannot be used is said at once
runs = service.runs()
if not runs:
    st.info("No runs yet. Start one on the Train page or with `python -m kd train`.")
    st.stop()


def row(r) -> dict:
    c, status = r.config, r.state
    out = {
        "run": r.id,
        "status": status,
        "data set": c["dataset"],
        "teacher": c["teacher"],
        "student": c["student"],
        "method": c["method"],
        "T": c["temperature"],
        "alpha": c["alpha"],
        "epochs": c["epochs"],
        "seed": c["seed"],
    }
    for name, title in (("teacher", "teacher acc %"), ("baseline", "alone acc %"), ("student", "distilled acc %")):
        m = r.models.get(name)
        out[title] = round(100 * m["accuracy"], 2) if m else None
    gain = r.summary.get("gain")
    out["gain (points)"] = round(100 * gain, 2) if gain is not None else None
    return out


table = pd.DataFrame([row(r) for r in runs])
picked = st.dataframe(
    table, hide_index=True, width="stretch", on_select="rerun", selection_mode="multi-row", key="history"
)
rows = list(picked.selection.rows) if picked and picked.selection else []
if rows:  # the choice goes into the URL (?compare=ID,ID), so a comparison can be shared
    chosen = [runs[i] for i in rows]
    st.query_params["compare"] = ",".join(r.id for r in chosen)
else:
    wanted = st.query_params.get("compare", "").split(",")
    chosen = [r for r in runs if r.id in wanted]
st.caption("Click column headers to sort; tick rows to compare them below.")
if not chosen:
    st.stop()

# -- compare the chosen runs -------------------------------------------------------------------
st.subheader(f"{len(chosen)} run{'s' if len(chosen) > 1 else ''} chosen")
fig = go.Figure()
dashes = ["solid", "dash", "dot", "dashdot", "longdash"]
for i, r in enumerate(chosen):
    _, epochs = plots.events_frames(e for _, e in service.events(r.id))
    for name in plots.MODELS:
        part = epochs[epochs["stage"] == name]
        if len(part):
            fig.add_scatter(
                x=part["epoch"],
                y=100 * part["val_acc"],
                mode="lines+markers",
                name=f"{r.id[-6:]} {plots.LABELS[name]}",
                line=dict(color=plots.COLORS[name], dash=dashes[i % len(dashes)]),
            )
fig.update_layout(
    template="plotly_white",
    xaxis_title="epoch",
    yaxis_title="validation accuracy (%)",
    margin=dict(l=10, r=10, t=30, b=10),
    legend=dict(orientation="h", y=1.02, yanchor="bottom"),
)
st.plotly_chart(fig, key="overlay")
st.caption("Colour: the model (teacher / student alone / distilled student); line style: the run.")

frames = []
for r in chosen:
    f = plots.metrics_table(r.models)
    f.insert(0, "run", r.id)
    frames.append(f)
metrics = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
st.dataframe(metrics, hide_index=True, width="stretch")
st.download_button("Download these metrics (CSV)", metrics.to_csv(index=False).encode(), "metrics.csv", "text/csv")

for r in chosen:
    with st.expander(run_label(r)):
        cols = st.columns(4)
        for col, name in zip(cols, plots.MODELS):
            path = service.weights_file(r.id, name)
            if path:
                col.download_button(
                    f"{plots.LABELS[name]} weights",
                    path.read_bytes(),
                    f"{r.id}-{name}.safetensors",
                    "application/octet-stream",
                    key=f"w-{r.id}-{name}",
                )
        cols[3].download_button(
            "config (JSON)", json.dumps(r.config, indent=2), f"{r.id}-config.json", "application/json", key=f"c-{r.id}"
        )
        st.page_link("pages/results.py", label="Results", icon=":material/leaderboard:", query_params={"run": r.id})
        if r.state in service.ACTIVE:
            st.caption("Running: stop it on its Live page before deleting it.")
        elif st.button("Delete this run", key=f"del-{r.id}", type="secondary"):
            try:
                service.delete(r.id)
            except KDError as e:
                show_error(e)
            else:
                st.rerun()

"""Runs: the history. Name, filter, group, tick to compare (?compare=ID,ID), delete, download."""

import json

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from kd import plots, service
from kd.errors import KDError
from pages.common import check_store, plain, show_error

st.title("Runs")
check_store()  # a store that cannot be used is said at once
every = service.runs()
if not every:
    st.info("No runs yet. Start one on the Train page or with `python -m kd train`.")
    st.stop()

# -- which runs: a filter on any setting that differs among them ------------------------------------
apart = service.differing(every)
values_of = {key: sorted({repr(service.config_value(r.config, key)) for r in every}) for key in apart}
left, right, group = st.columns([1, 2, 1])
key = left.selectbox("Filter by", ["(all runs)", "status", *apart], key="runs_filter_by")
runs = every
if key != "(all runs)":
    options = sorted({r.state for r in every}) if key == "status" else values_of[key]
    keep = right.multiselect(f"{key} is", options, default=options, key=f"runs_filter_{key}")
    value = (lambda r: r.state) if key == "status" else (lambda r: repr(service.config_value(r.config, key)))
    runs = [r for r in every if value(r) in keep]
if not runs:
    st.info("No run matches the filter.")
    st.stop()
names = service.names(runs)
apart = service.differing(runs)  # the columns: every setting that differs among the runs shown

# -- the table: ticks and names are editable; the ticks live in the URL -----------------------------
wanted = [i for i in st.query_params.get("compare", "").split(",") if i]
version = st.session_state.setdefault("runs_table_version", 0)  # a new table after a rename or delete


def row(r) -> dict:
    out = {"compare": r.id in wanted, "name": names[r.id]}
    gain = r.summary.get("gain")
    out["gain (points)"] = round(100 * gain, 2) if gain is not None else None
    for name, title in (("student", "distilled acc %"), ("baseline", "alone acc %"), ("teacher", "teacher acc %")):
        m = r.models.get(name)
        out[title] = round(100 * m["accuracy"], 2) if m else None
    out["status"] = r.state
    for k in apart:
        v = service.config_value(r.config, k)
        out[k] = v if isinstance(v, int | float | str | bool) or v is None else str(v)
    out["run"] = r.id
    return out


table = pd.DataFrame([row(r) for r in runs])
by = group.selectbox(
    "Group by", ["(no grouping)", "status", *apart], key="runs_group_by", help="one line per value, above the runs"
)
if by != "(no grouping)":
    st.dataframe(
        plots.group_table(table, by),
        hide_index=True,
        width="stretch",
        column_config={"best run": st.column_config.TextColumn(help="the run of the group with the largest gain")},
    )
edited = st.data_editor(
    table,
    hide_index=True,
    width="stretch",
    disabled=[c for c in table.columns if c not in ("compare", "name")],
    column_config={
        "compare": st.column_config.CheckboxColumn("compare", help="tick runs to compare them below"),
        "name": st.column_config.TextColumn("name", help="click to rename", max_chars=service.NAME_MAX),
        "gain (points)": st.column_config.NumberColumn(help="distilled student minus the student alone"),
    },
    key=f"runs_table_{version}",
)
renamed = [(r, n) for r, n in zip(runs, edited["name"]) if str(n or "").strip() != names[r.id]]
for r, new in renamed:
    try:
        service.rename(r.id, "" if new is None else str(new))
    except KDError as e:
        show_error(e)
        break
else:
    if renamed:
        st.session_state["runs_table_version"] = version + 1
        st.rerun()
ticked = [r for r, tick in zip(runs, edited["compare"]) if tick]
# Ticks of runs the filter hides stay in the link; the ones shown are as ticked.
shown = {r.id for r in runs}
chosen_ids = [i for i in wanted if i not in shown] + [r.id for r in ticked]
if chosen_ids != wanted:
    st.query_params["compare"] = ",".join(chosen_ids)
st.caption("Tick runs to compare them below; click a name to rename the run. The link keeps the ticks.")
chosen = [r for r in every if r.id in chosen_ids]
if not chosen:
    st.stop()


# -- delete, after asking --------------------------------------------------------------------------
@st.dialog("Delete runs")
def confirm_delete(doomed: list) -> None:
    st.write(f"Delete {len(doomed)} run{'s' if len(doomed) > 1 else ''}? Their records, events and weights go.")
    for r in doomed:
        st.markdown(f"- {plain(names.get(r.id) or r.id)} ({r.id})")
    yes, no = st.columns(2)
    if yes.button("Delete", type="primary", key="delete_yes"):
        failed = []
        for r in doomed:
            try:
                service.delete(r.id)
            except KDError as e:
                failed.append(str(e))
        st.query_params.pop("compare", None)  # nothing stays ticked: no next run under the pointer
        st.session_state["runs_table_version"] = version + 1
        if failed:
            st.session_state["runs_delete_failed"] = failed
        st.rerun()
    if no.button("Cancel", key="delete_no"):
        st.rerun()


for message in st.session_state.pop("runs_delete_failed", []):
    show_error(KDError(message))
st.subheader(f"{len(chosen)} run{'s' if len(chosen) > 1 else ''} chosen")
active = [r for r in chosen if r.state in service.ACTIVE]
if st.button(f"Delete the {len(chosen) - len(active)} ticked run(s)…", disabled=len(active) == len(chosen)):
    confirm_delete([r for r in chosen if r.state not in service.ACTIVE])
if active:
    st.caption(f"{len(active)} ticked run(s) still active: stop them on their Live page before deleting them.")

# -- compare the chosen runs -----------------------------------------------------------------------
label = {r.id: names.get(r.id) or service.names([r])[r.id] for r in chosen}
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
                name=f"{label[r.id]}: {plots.LABELS[name]}",
                legendgroup=r.id,
                line=dict(color=plots.COLORS[name], dash=dashes[i % len(dashes)]),
                hovertemplate=f"{label[r.id]}<br>{plots.LABELS[name]}<br>epoch %{{x}}: %{{y:.2f}} %<extra></extra>",
            )
fig.update_layout(
    template="plotly_white",
    xaxis_title="epoch",
    yaxis_title="validation accuracy (%)",
    margin=dict(l=10, r=10, t=30, b=10),
    legend=dict(orientation="h", y=-0.2, yanchor="top"),
)
st.plotly_chart(fig, key="overlay")
st.caption("Colour: the model (teacher / student alone / distilled student); line style: the run.")

frames = []
for r in chosen:
    f = plots.metrics_table(r.models)
    f.insert(0, "name", label[r.id])
    frames.append(f)
metrics = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
st.dataframe(metrics.drop(columns=["IQR @256"], errors="ignore"), hide_index=True, width="stretch")  # fits 1280 px
st.download_button("Download these metrics (CSV)", metrics.to_csv(index=False).encode(), "metrics.csv", "text/csv")

for r in chosen:
    with st.expander(f"{label[r.id]} ({r.id}, {r.state})"):
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

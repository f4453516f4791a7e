"""Runs: every stored run with its configuration and headline accuracies."""
import pandas as pd
import streamlit as st

from kd.store import Store

st.title("Runs")
runs = Store().runs()
if not runs:
    st.info("No runs yet. Start one with `python -m kd train`.")
    st.stop()
rows = []
for r in runs:
    c = r.config
    row = {"run": r.id, "status": r.status, "data set": c["dataset"], "teacher": c["teacher"],
           "student": c["student"], "method": c["method"], "T": c["temperature"], "alpha": c["alpha"],
           "epochs": c["epochs"]}
    for name, title in (("teacher", "teacher acc %"), ("baseline", "student alone acc %"),
                        ("student", "distilled acc %")):
        m = r.models.get(name)
        row[title] = round(100 * m["accuracy"], 2) if m else None
    rows.append(row)
st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch")

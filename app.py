"""Distill Lab: the router. st.navigation over the scripts in pages/, and a warm worker kept ready."""

import streamlit as st

from kd import service
from kd.errors import KDError

st.set_page_config(page_title="Distill Lab", page_icon=":material/science:", layout="wide")
# Streamlit's own "Stop" beside its running indicator stops this page's script, not a run, and
# flickers with each poll of the live pages: hidden, so the one Stop is the app's "Stop run".
st.html("<style>[data-testid='stStatusWidget'] button {display: none}</style>")

pages = [
    st.Page("pages/home.py", title="Home", icon=":material/home:", default=True),
    st.Page("pages/train.py", title="Train", icon=":material/play_arrow:"),
    st.Page("pages/sweep.py", title="Sweep", icon=":material/grid_on:"),
    st.Page("pages/live.py", title="Live", icon=":material/monitoring:"),
    st.Page("pages/results.py", title="Results", icon=":material/leaderboard:"),
    st.Page("pages/runs.py", title="Runs", icon=":material/table_rows:"),
    st.Page("pages/pareto.py", title="Pareto", icon=":material/scatter_plot:"),
    st.Page("pages/temperature.py", title="Temperature", icon=":material/thermostat:"),
]
try:
    service.keep_warm()  # a worker waiting with torch imported: Start trains at once
    st.navigation(pages).run()
except KDError as e:  # e.g. a run store damaged while the page ran: one message, never a traceback
    from pages.common import plain

    st.error(plain(str(e)))

"""Live view of one run (?run=ID): a progress bar per stage, loss and accuracy curves, Stop.

The run is a separate process writing to the store; this page only polls it (about once a
second, inside a fragment), so closing or refreshing the page never touches the training.
"""

import time

import streamlit as st

from kd import plots, service
from kd.errors import KDError
from pages.common import STATUS_ICONS, check_store, current_run, plain, run_label, show_error

QUIET_NOTE_S = 30.0  # a live owner silent this long is named on the page (busy or suspended)

RESUME_HELP = "Go on from the last finished epoch: finished stages are kept, the curves continue."

st.title("Live")
check_store()  # a store that cannot be used is said at once
run = current_run()
if run is None:
    runs = service.runs()
    if not runs:
        st.info("No runs yet: start one on the Train page.")
        st.page_link("pages/train.py", label="Train", icon=":material/play_arrow:")
        st.stop()
    run = st.selectbox("Run", runs, format_func=run_label)
    st.query_params["run"] = run.id
run_id = run.id


def poll() -> tuple[list[dict], object]:
    """New events since the last poll, appended to this session's copy of the run's events.
    A resume drops the events after its checkpoint, so a resumed run is read afresh."""
    now = service.get_run(run_id)
    cache = st.session_state.setdefault("live_events", {})
    seen = cache.get(run_id)
    if seen is None or seen["resumed"] != now.resumed:
        seen = cache[run_id] = {"seq": 0, "events": [], "resumed": now.resumed}
    for seq, event in service.events(run_id, since=seen["seq"]):
        seen["events"].append(event)
        seen["seq"] = seq
    return seen["events"], now


CHARTS_EVERY_S = 1.0  # while a run trains, the page is redrawn at most this often


def snapshot(run_id: str, events: list[dict], active: bool) -> tuple[int, tuple]:
    """How many of the events this redraw shows, and the two charts and the speed built from
    them: the charts, the progress bars and the notes all come from that one prefix. The charts
    are rebuilt only when new events came in, and while the run trains at most every
    CHARTS_EVERY_S (each redraw costs the server and the browser CPU the run could use)."""
    cached = st.session_state.get("live_figures")
    if cached and cached[0] == (run_id, len(events)):
        return cached[0][1], cached[1]
    if cached and active and cached[0][0] == run_id and time.monotonic() - cached[2] < CHARTS_EVERY_S:
        return cached[0][1], cached[1]
    steps, epochs = plots.events_frames(events)
    speed = steps["samples_per_s"].dropna()
    out = (plots.loss_figure(steps), plots.accuracy_figure(epochs), float(speed.iloc[-1]) if len(speed) else None)
    st.session_state["live_figures"] = ((run_id, len(events)), out, time.monotonic())
    return len(events), out


@st.fragment(run_every=1.0 if run.state in service.ACTIVE else None)
def live() -> None:
    try:
        draw()
    except KDError as e:  # the store went bad or busy between two polls: say so, poll again
        show_error(e)


def draw() -> None:
    events, now = poll()
    status = now.state
    head, stop = st.columns([5, 1])
    head.markdown(f"{STATUS_ICONS.get(status, '')} **{status}** · {plain(run_label(now, status=False))}")
    if status in service.ACTIVE and stop.button("Stop run", type="secondary", disabled=now.stop_requested):
        try:
            service.stop(run_id)
        except KDError as e:
            show_error(e)
        else:
            st.toast("Stop requested: the run ends after the current batch and keeps what it has.")
    if status in service.RESUMABLE and stop.button("Resume", type="primary", help=RESUME_HELP):
        try:
            service.resume(run_id)
        except KDError as e:
            show_error(e)
        else:
            st.rerun()  # redraw with the polling timer on
    if status == "interrupted":
        st.warning(
            "This run's process ended without finishing (killed, or the machine slept). "
            "Resume goes on from its last finished epoch; nothing before that is lost."
        )
    quiet = service.quiet_for(now)
    if status in service.ACTIVE and now.token and quiet > QUIET_NOTE_S:
        st.info(
            f"No sign of life from this run for {quiet:,.0f} s, but its process (pid {now.pid}) is alive: "
            "the machine is busy, or the process is suspended. It goes on when it can; it can be "
            "resumed only once its process has ended.",
            icon=":material/hourglass_top:",
        )
    if now.message:
        (st.error if status in ("failed", "diverged") else st.info)(plain(now.message))
    shown, (loss, accuracy, speed) = snapshot(run_id, events, status in service.ACTIVE) if events else (0, (None,) * 3)
    events = events[:shown]  # bars, charts and notes from one snapshot
    done = plots.progress(events)
    bars = st.columns(3)
    for col, name in zip(bars, plots.MODELS):
        col.progress(min(1.0, done.get(name, 0.0)), text=f"{plots.LABELS[name]}: {100 * done.get(name, 0.0):.0f} %")
    if not events:  # no axes without a point on them
        if status in service.ACTIVE:
            st.caption(
                "The curves appear here once the run's process has loaded the data and begun to train."
                if status == "running" or not now.message
                else "The curves appear here once the run has its turn."
            )
    else:
        left, right = st.columns(2)
        left.plotly_chart(loss, key="loss")
        right.plotly_chart(accuracy, key="accuracy")
    notes = [f"{speed:,.0f} samples/s · {len(events):,} events"] if speed else []
    notes += plots.run_notes(events)  # what of the teacher is cached, how big; what the method learned
    if notes:
        st.caption(plain(" · ".join(notes)))
    if status not in service.ACTIVE:
        st.page_link(
            "pages/results.py", label="See the results", icon=":material/leaderboard:", query_params={"run": run_id}
        )
        if st.session_state.get("live_was_active") == run_id:
            st.session_state.pop("live_was_active")
            st.rerun()  # the run just ended: redraw the page once without the polling timer
    else:
        st.session_state["live_was_active"] = run_id


live()

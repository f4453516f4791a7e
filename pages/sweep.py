"""Sweep: a grid of temperatures, alphas, methods and students over seeds, against one teacher.

The heatmap fills while the sweep trains (validation gain at each cell's latest epoch, in
italics) and settles on the test-set gain, mean ± std over the seeds, as each cell is stored.
Click a cell for its seeds and curves; each seed is a run of its own (Open as a run).
"""

import streamlit as st

from kd import plots, service
from kd.errors import KDError
from pages.common import STATUS_ICONS, check_store, plain, show_error

TEMPERATURES = [0.5, 1.0, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0, 16.0, 20.0]
ALPHAS = [0.1, 0.3, 0.5, 0.7, 0.9, 0.95, 1.0]
NAMES = {"temperature": "T", "alpha": "α", "method": "method", "student": "student"}

st.title("Sweep")
check_store()
sweep_id = st.query_params.get("sweep")
if sweep_id and not service.is_sweep(sweep_id):
    st.error(f"No such sweep: {plain(repr(sweep_id))}. Pick one below or start a new one.")
    sweep_id = None


def new_sweep() -> None:
    """The form: one value or several for each axis; Start queues the sweep and shows it."""
    base = service.RunConfig()
    with st.form("new_sweep"):
        a, b, c = st.columns(3)
        dataset = a.selectbox("Data set", list(service.datasets()), index=list(service.datasets()).index(base.dataset))
        epochs = b.number_input("Epochs", min_value=1, max_value=1000, value=base.epochs)
        seeds = c.radio("Seeds", [1, 3, 5], index=1, horizontal=True, help="each cell trains once per seed")
        data_dir = None
        if service.needs_data_dir(dataset):
            data_dir = st.text_input("Data folder", help=service.field("data_dir").knob.help) or None
        a, b = st.columns(2)
        archs = list(service.architectures())
        teacher = a.selectbox("Teacher", archs, index=archs.index(base.teacher))
        students = b.multiselect("Students", archs, default=[base.student])
        a, b, c = st.columns(3)
        methods = a.multiselect("Methods", [m for m in service.methods() if m != "none"], default=[base.method])
        temps = b.multiselect("Temperatures T", TEMPERATURES, default=[1.0, 2.0, 4.0, 8.0])
        alphas = c.multiselect("alpha (weight of the soft term)", ALPHAS, default=[0.5, 0.9])
        started = st.form_submit_button("Start sweep", type="primary")
    if not started:
        return
    picked = {"temperature": temps, "alpha": alphas, "method": methods, "student": students}
    empty = [NAMES[k] for k, v in picked.items() if not v]
    if empty:
        st.error(f"Pick at least one value for: {', '.join(empty)}.")
        return
    single = {k: v[0] for k, v in picked.items() if len(v) == 1}
    axes = {k: v for k, v in picked.items() if len(v) > 1}
    try:
        cfg = service.RunConfig(dataset=dataset, teacher=teacher, epochs=int(epochs), data_dir=data_dir, **single)
        new_id = service.start_sweep(cfg, axes, list(range(seeds)))
    except KDError as e:
        show_error(e)
        return
    st.query_params["sweep"] = new_id
    st.rerun()


def past_sweeps() -> None:
    sweeps = service.sweeps()
    if not sweeps:
        return
    st.subheader("Past sweeps")
    for s in sweeps[:20]:
        try:
            r = service.sweep_result(s.id)
        except KDError as e:  # e.g. its data folder is gone: said on its line, the others still listed
            st.caption(f"{s.id}: cannot be read ({plain(str(e))})")
            continue
        axes = " × ".join(f"{NAMES.get(k, k)} ({len(v)})" for k, v in r["axes"].items()) or "one cell"
        done = sum(len(c["seeds"]) for c in r["cells"])
        st.page_link(
            "pages/sweep.py",
            label=f"{s.id} · {s.config['dataset']} · {axes} · {len(r['seeds'])} seeds · {done} trained · {s.state}",
            icon=STATUS_ICONS.get(s.state, ":material/grid_on:"),
            query_params={"sweep": s.id},
        )


def poll(sweep_id: str, resumed: int) -> list[dict]:
    """This session's copy of the sweep's events, topped up with the new ones."""
    cache = st.session_state.setdefault("sweep_events", {})
    seen = cache.get(sweep_id)
    if seen is None or seen["resumed"] != resumed:
        seen = cache[sweep_id] = {"seq": 0, "events": [], "resumed": resumed}
    for seq, event in service.events(sweep_id, since=seen["seq"]):
        seen["events"].append(event)
        seen["seq"] = seq
    return seen["events"]


def label(params: dict) -> str:
    return ", ".join(f"{NAMES.get(k, k)} = {plots.value_text(v)}" for k, v in params.items()) or "the one cell"


def show(sweep_id: str) -> None:
    run = service.get_run(sweep_id)
    result = service.sweep_result(sweep_id)
    events = poll(sweep_id, run.resumed)
    axes = result["axes"]
    total = len(result["cells"]) * len(result["seeds"])
    done = sum(len(c["seeds"]) for c in result["cells"])
    head, button = st.columns([5, 1])
    head.markdown(
        f"{STATUS_ICONS.get(run.state, '')} **{run.state}** · {plain(result['dataset'])} · teacher "
        f"{plain(result['teacher']['arch'])} · {done} of {total} students stored"
    )
    if run.state in service.ACTIVE:
        if button.button("Stop sweep", disabled=run.stop_requested, key="stop_sweep"):
            service.stop(sweep_id)
            st.rerun()
    elif run.state in service.RESUMABLE and button.button("Resume", key="resume_sweep"):
        try:
            service.resume(sweep_id)
        except KDError as e:
            show_error(e)
        st.rerun()
    if run.message and run.state not in ("done", *service.ACTIVE):
        st.caption(plain(run.message))
    b, t = result["baseline"], result["teacher"]
    if t["accuracy"] is not None and b["accuracy_mean"] is not None:
        alone = "students alone (each architecture" if "student" in axes else "student alone (each seed"
        st.caption(
            f"Teacher {t['accuracy'] * 100:.2f} %; {alone}, then mean ± std) "
            f"{b['accuracy_mean'] * 100:.2f} ± {b['accuracy_std'] * 100:.2f} %. "
            "Gain: the distilled student's test accuracy minus its own seed's student alone, in points."
        )
    st.caption(
        "Trained "
        + "; ".join(
            f"{g['students']} {'students alone' if g['stage'] == 'baseline' else 'distilled students'} "
            + (
                "one after another"
                if g["group"] == 1
                else "in one lockstep group"
                if g["students"] <= g["group"]
                else f"in lockstep groups of up to {g['group']}"
            )
            for g in result.get("groups", [])
        )
        + " (memory budget: KD_GROUP_MB)."
    )
    frame = plots.sweep_frame(result, events)
    many = [k for k, v in axes.items() if len(v) > 1]
    x_default = "temperature" if "temperature" in many else (many[0] if many else None)
    y_default = "alpha" if "alpha" in many and x_default != "alpha" else next((k for k in many if k != x_default), None)
    cols = st.columns(4)
    x = cols[0].selectbox("Across", many, index=many.index(x_default), format_func=NAMES.get) if many else None
    rest = [k for k in many if k != x]
    y = (
        cols[1].selectbox("Down", rest, index=rest.index(y_default) if y_default in rest else 0, format_func=NAMES.get)
        if rest
        else None
    )
    shown = frame
    for i, k in enumerate(k for k in many if k not in (x, y)):  # a third axis: one slice at a time
        value = cols[2 + i % 2].selectbox(NAMES.get(k, k), [plots.value_text(v) for v in axes[k]], key=f"slice_{k}")
        shown = shown[shown[k] == value]
    fig = plots.sweep_heatmap(shown.reset_index(drop=True), x, y, axes)
    picked = st.plotly_chart(fig, on_select="rerun", selection_mode="points", key=f"heat_{sweep_id}")
    best = plots.best_cell(frame)
    if best is not None:
        params = result["cells"][best["cell"]]["params"]
        gain = f"{best['gain']:+.2f} ± {best['gain_std']:.2f} points"
        if best["gain"] > 0:
            line = f"Best: **{label(params)}**, {gain} over the student alone"
        else:
            line = f"No cell beats the student alone here; the closest is **{label(params)}** at {gain}"
        if "margin" in best:
            runner = label(result["cells"][best["runner_up"]]["params"])
            line += f", {best['margin']:.2f} points ahead of {runner}" + (
                "" if best["clear"] else " (within the seeds' spread: not a clear winner)"
            )
        (st.success if best["gain"] > 0 else st.warning)(line + ".")
    points = picked.selection.points if picked and picked.selection else []
    cell = points[0]["customdata"] if points and "customdata" in points[0] else (best or {}).get("cell")
    if cell is None:
        st.caption("Cells fill in as their students finish epochs; click one for its seeds and curves.")
        return
    show_cell(result, int(cell))


def show_cell(result: dict, cell: int) -> None:
    c = result["cells"][cell]
    st.subheader(label(c["params"]))
    if not c["run_ids"]:
        st.caption("Not stored yet: its seeds are still training.")
        return
    seeds = service.seed_runs(c)
    if not seeds:
        return
    st.plotly_chart(plots.seeds_figure(seeds), key=f"seeds_{cell}")
    which = st.radio(
        "Seed", seeds, format_func=lambda s: f"seed {s['seed']}", horizontal=True, key=f"seed_{result['sweep_id']}"
    )
    _, epochs = plots.events_frames(e for _, e in service.events(which["run"].id))
    st.plotly_chart(plots.accuracy_figure(epochs[epochs["stage"] != "teacher"]), key=f"curves_{cell}")
    st.page_link(
        "pages/results.py",
        label=f"Open as a run: {which['run'].id}",
        icon=":material/leaderboard:",
        query_params={"run": which["run"].id},
    )


with st.expander("New sweep", expanded=sweep_id is None, icon=":material/add:"):
    new_sweep()
if sweep_id:
    active = service.get_run(sweep_id).state in service.ACTIVE

    @st.fragment(run_every=1.0 if active else None)
    def live() -> None:
        try:
            show(sweep_id)
        except KDError as e:
            show_error(e)
        if active and service.get_run(sweep_id).state not in service.ACTIVE:
            st.rerun()  # it ended: the whole page again, which stops polling

    live()
past_sweeps()

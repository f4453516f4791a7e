"""Home: what distillation is, in four lines and one picture, and two one-click demos."""

import streamlit as st

from kd import plots, service
from kd.errors import KDError
from pages.common import check_store, show_error

st.title("Distill Lab")
check_store()  # a store that cannot be used is said at once
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
cfg, few = service.quick_demo(), service.few_labels_demo()
digits = service.dataset_spec(cfg.dataset)
shrink = service.param_count(cfg.teacher, digits) / service.param_count(cfg.student, digits)
grids = {"quick": service.demo_grid(cfg), "few": service.demo_grid(few)}
quick_pays = service.paying_cell(cfg) is not None


def pays(demo: service.RunConfig) -> str:
    """What the demo's grid says of its T and alpha (its best cell), in a sentence; "" without a grid."""
    cell = service.best_cell(demo)
    if cell is None:
        return ""
    gain = f"{100 * cell['gain_mean']:+.1f} ± {100 * cell['gain_std']:.1f} points"
    if service.paying_cell(demo) is None:
        return (
            f" No T and α pays here (the grid below): the best, this one, gives {gain} "
            f"against the student alone ({len(cell['seeds'])} seeds)."
        )
    seeds = len(cell["seeds"])
    return f" In the grid below, this T and α gain {gain} over the student alone ({seeds} seeds), the most of any cell."


st.subheader("Quick demos")


def start(demo: service.RunConfig) -> None:
    try:
        run_id = service.start(demo)
    except KDError as e:
        show_error(e)
    else:
        st.switch_page("pages/live.py", query_params={"run": run_id})


def evidence(grid: dict | None, where) -> None:
    """The demo's T x alpha grid (gain over the student alone, mean ± std over its seeds)."""
    if grid is None:
        return
    sweep = grid["sweep"]
    frame = plots.sweep_frame(sweep, [])
    where.plotly_chart(plots.sweep_heatmap(frame, "temperature", "alpha", sweep["axes"]), key=f"grid-{id(grid)}")
    where.caption(
        f"Gain of the distilled student over the student alone (points, mean ± std over {len(sweep['seeds'])} "
        f"seeds) for each T and α, measured on {grid['date']} ({grid['file']}, `python bench/grids.py`)."
    )


def quick_demo(where) -> None:
    where.markdown(
        f"**Compress.** Digits (8×8, bundled), teacher `{cfg.teacher}` → student `{cfg.student}`, "
        f"T = {cfg.temperature:g}, α = {cfg.alpha:g}, {cfg.epochs} epochs each: a few seconds on a CPU. "
        f"The student has 1/{shrink:.0f} of the teacher's parameters." + pays(cfg)
    )
    if where.button("Run the quick demo", type="primary" if quick_pays else "secondary", icon=":material/bolt:"):
        start(cfg)
    evidence(grids["quick"], where)


def few_labels_demo(where) -> None:
    measured = service.measured(few)  # None without a results file of this very config: nothing said
    where.markdown(
        f"**Few labels.** The same pair, but the students learn from {few.student_fraction:.0%} of the "
        "training images (63, about 6 a class) while the teacher saw them all: its soft targets carry "
        f"what a few labels cannot (Hinton et al. 2015, §5). T = {few.temperature:g}, α = {few.alpha:g}."
        + pays(few)
        + (
            f" Measured on {measured['date']} over {len(measured['gains'])} seeds: about "
            f"{measured['wall_s']:.0f} s a run, the distilled student {min(measured['gains']):.1f} to "
            f"{max(measured['gains']):.1f} points above the student alone."
            if measured
            else ""
        )
    )
    if where.button("Run the few-labels demo", type="secondary" if quick_pays else "primary", icon=":material/school:"):
        start(few)
    evidence(grids["few"], where)


first, second = st.columns(2)
if quick_pays or not grids["quick"]:  # lead with the demo where distillation pays
    quick_demo(first)
    few_labels_demo(second)
else:
    few_labels_demo(first)
    quick_demo(second)
st.page_link("pages/train.py", label="Or choose everything yourself on the Train page", icon=":material/tune:")
st.page_link("pages/sweep.py", label="Or try a grid of T and α on the Sweep page", icon=":material/grid_on:")

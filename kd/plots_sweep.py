"""The sweep's figures: the grid as a heatmap of the gain, one cell's seeds, and the Pareto view
of every model in the store. Pages reach them as kd.plots.* (kd/plots.py re-exports them)."""

from __future__ import annotations

from collections.abc import Iterable

import pandas as pd
import plotly.graph_objects as go

from kd.events import Cell, parse

AXIS_TITLES = {"temperature": "T", "alpha": "α", "method": "method", "student": "student", "standardize": "standardize"}
ROLES = {"teacher": "teacher", "baseline": "student alone", "student": "distilled student"}
ROLE_COLORS = {"teacher": "#0072B2", "baseline": "#E69F00", "student": "#009E73"}
PARETO_AXES = {"params": "parameters", "size_mb": "size on disk (MB)", "latency_ms_256": "CPU latency, batch 256 (ms)"}


def value_text(v) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def sweep_frame(result: dict, stored: Iterable[dict]) -> pd.DataFrame:
    """One row per cell: its params (one column per axis), `gain` and `gain_std` in points and
    `accuracy` in %, from the test set once every seed is stored (`final`), else from validation
    at each seed's latest epoch (distilled minus alone at that epoch); `epoch` of `epochs`, and
    `seeds` stored. While nothing has finished an epoch the gain is NaN."""
    student_val: dict[tuple[int, int], tuple[int, float]] = {}
    alone_val: dict[tuple[str | None, int, int], float] = {}
    epochs_of = {}
    for d in stored:
        e = parse(d)
        if not isinstance(e, Cell) or e.run_id or e.val_acc is None:
            continue
        epochs_of[e.cell] = e.epochs
        if e.stage == "baseline":
            alone_val[(e.student, e.seed, e.epoch)] = e.val_acc
        else:
            student_val[(e.cell, e.seed)] = (e.epoch, e.val_acc)
    n_seeds = len(result["seeds"])
    rows = []
    for i, c in enumerate(result["cells"]):
        row = {"cell": i, **{k: value_text(v) for k, v in c["params"].items()}, "seeds": len(c["seeds"])}
        row["run_ids"] = c["run_ids"]
        if len(c["seeds"]) == n_seeds and c["gain_mean"] is not None:
            row.update(
                gain=100 * c["gain_mean"],
                gain_std=100 * c["gain_std"],
                accuracy=100 * c["accuracy_mean"],
                final=True,
                epoch=None,
            )
        else:
            gains, last = [], 0
            student = c["params"].get("student", result.get("student"))
            for seed in result["seeds"]:
                if (i, seed) not in student_val:
                    continue
                epoch, val = student_val[(i, seed)]
                alone = alone_val.get((student, seed, epoch))
                if alone is not None:
                    gains.append(100 * (val - alone))
                last = max(last, epoch)
            series = pd.Series(gains, dtype=float)
            row.update(
                gain=series.mean() if gains else float("nan"),
                gain_std=series.std(ddof=1) if len(gains) > 1 else 0.0,
                accuracy=float("nan"),
                final=False,
                epoch=last,
            )
        row["epochs"] = epochs_of.get(i)
        rows.append(row)
    return pd.DataFrame(rows)


def sweep_heatmap(frame: pd.DataFrame, x: str | None, y: str | None, axes: dict[str, list]) -> go.Figure:
    """The gain of each cell (points; diverging colours, 0 white) over two axes, as squares a
    click selects (customdata: the cell index). Text: mean ± std over the seeds; cells still
    training show their validation gain in grey italics with the epoch they are at."""
    xs = [value_text(v) for v in axes.get(x, [])] or ["all"]
    ys = [value_text(v) for v in axes.get(y, [])] or ["all"]
    xcol = frame[x] if x in axes else pd.Series(["all"] * len(frame))  # no such axis: one column
    ycol = frame[y] if y in axes else pd.Series(["all"] * len(frame))
    limit = max(1.0, float(frame["gain"].abs().max())) if frame["gain"].notna().any() else 1.0
    texts, hovers = [], []
    for _, r in frame.iterrows():
        if r["gain"] != r["gain"]:  # NaN: not one epoch yet
            texts.append("…")
        elif r["final"]:
            texts.append(f"<b>{r['gain']:+.2f}</b><br>± {r['gain_std']:.2f}")
        else:
            texts.append(f"<i>{r['gain']:+.2f}</i><br><i>epoch {int(r['epoch'])}</i>")
        params = ", ".join(f"{AXIS_TITLES.get(k, k)} = {r[k]}" for k in axes)
        hovers.append(
            f"{params}<br>"
            + (
                f"gain {r['gain']:+.2f} ± {r['gain_std']:.2f} points (test, {int(r['seeds'])} seeds)<br>"
                f"accuracy {r['accuracy']:.2f} %"
                if r["final"]
                else "training: validation gain so far"
            )
        )
    # The colours and numbers are a heatmap (it fills whatever width it gets); an invisible marker on
    # each cell carries the hover text and is what a click selects.
    z = [[None] * len(xs) for _ in ys]
    text = [[""] * len(xs) for _ in ys]
    for xv, yv, g, t in zip(xcol, ycol, frame["gain"], texts):
        if xv in xs and yv in ys:
            z[ys.index(yv)][xs.index(xv)] = None if g != g else float(g)
            text[ys.index(yv)][xs.index(xv)] = t
    fig = go.Figure(
        go.Heatmap(
            z=z,
            x=xs,
            y=ys,
            text=text,
            texttemplate="%{text}",
            textfont=dict(size=12),
            colorscale="RdBu",
            zmin=-limit,
            zmax=limit,
            xgap=3,
            ygap=3,
            colorbar=dict(title="gain<br>(points)"),
            hoverinfo="skip",
        )
    )
    fig.add_scatter(
        x=xcol,
        y=ycol,
        mode="markers",
        marker=dict(size=40, opacity=0, symbol="square"),
        hovertext=hovers,
        hoverinfo="text",
        customdata=frame["cell"],
        showlegend=False,
    )
    fig.update_xaxes(title_text=AXIS_TITLES.get(x, x), type="category", categoryorder="array", categoryarray=xs)
    fig.update_yaxes(title_text=AXIS_TITLES.get(y, y), type="category", categoryorder="array", categoryarray=ys)
    fig.update_layout(
        template="plotly_white",
        margin=dict(l=10, r=10, t=30, b=10),
        height=max(320, 110 * len(ys) + 120),
        clickmode="event+select",
        dragmode=False,
    )
    return fig


def best_cell(frame: pd.DataFrame) -> dict | None:
    """The finished cell with the highest mean gain, its margin over the next, and whether that
    margin is within the seeds' spread: {"cell", "gain", "gain_std", "margin", "runner_up", "clear"}."""
    done = frame[frame["final"]].sort_values("gain", ascending=False)
    if done.empty:
        return None
    top = done.iloc[0]
    out = {"cell": int(top["cell"]), "gain": float(top["gain"]), "gain_std": float(top["gain_std"])}
    if len(done) > 1:
        second = done.iloc[1]
        out.update(margin=float(top["gain"] - second["gain"]), runner_up=int(second["cell"]))
        out["clear"] = out["margin"] > max(float(top["gain_std"]), float(second["gain_std"]))
    return out


def seeds_figure(runs: list[dict]) -> go.Figure:
    """One cell's seeds: each seed's test accuracy as a dot, for the student alone and the
    distilled student (runs: [{"seed", "baseline", "student"}] with accuracies in %)."""
    fig = go.Figure()
    for role in ("baseline", "student"):
        values = [r[role] for r in runs]
        mean = sum(values) / len(values)
        fig.add_scatter(
            x=values,
            y=[ROLES[role]] * len(values),
            mode="markers",
            marker=dict(size=13, color=ROLE_COLORS[role], line=dict(color="white", width=1)),
            name=ROLES[role],
            text=[f"seed {r['seed']}" for r in runs],
            hovertemplate="%{text}: %{x:.2f} %<extra></extra>",
        )
        fig.add_scatter(
            x=[mean],
            y=[ROLES[role]],
            mode="markers",
            marker=dict(symbol="line-ns", size=26, line=dict(color="#333", width=2)),
            showlegend=False,
            hovertemplate=f"mean {mean:.2f} %<extra></extra>",
        )
    fig.update_xaxes(title_text="test accuracy (%)")
    fig.update_layout(template="plotly_white", height=200, margin=dict(l=10, r=10, t=10, b=10), showlegend=False)
    return fig


def pareto_frame(runs: Iterable) -> pd.DataFrame:
    """Every model of every finished run: run id, role, architecture, data set, accuracy (%),
    params, size_mb, latency_ms_256. A teacher or student alone that several runs share (a
    sweep's) appears once."""
    rows, seen = [], set()
    for r in runs:
        for role, m in r.models.items():
            if not m or m.get("accuracy") is None:
                continue
            arch = r.config["teacher"] if role == "teacher" else r.config["student"]
            key = (r.config["dataset"], role, arch, round(m["accuracy"], 6), m.get("params"))
            if role != "student" and key in seen:
                continue
            seen.add(key)
            c = r.config
            label = arch if role != "student" else f"{arch} · {c['method']} T={c['temperature']:g} α={c['alpha']:g}"
            rows.append(
                {
                    "run": r.id,
                    "role": role,
                    "arch": arch,
                    "dataset": c["dataset"],
                    "label": label,
                    "accuracy": 100 * m["accuracy"],
                    "params": m.get("params"),
                    "size_mb": m.get("size_mb"),
                    "latency_ms_256": m.get("latency_ms_256"),
                }
            )
    return pd.DataFrame(rows)


def frontier(frame: pd.DataFrame, x: str) -> pd.DataFrame:
    """The points no other point beats: none is at least as accurate with a smaller x."""
    best, keep = float("-inf"), []
    for i, r in frame.sort_values([x, "accuracy"], ascending=[True, False]).iterrows():
        if r["accuracy"] > best:
            best = r["accuracy"]
            keep.append(i)
    return frame.loc[keep]


def pareto_figure(frame: pd.DataFrame, x: str) -> go.Figure:
    """Accuracy against `x` (params, size_mb or latency_ms_256, log scale) for every model, by
    role, with the frontier drawn; a point's customdata is its run id (a click selects it)."""
    fig = go.Figure()
    data = frame.dropna(subset=[x])
    symbols = {"teacher": "circle", "student": "circle", "baseline": "diamond-open"}  # alone on top, open
    for role in ("teacher", "student", "baseline"):
        part = data[data["role"] == role]
        if part.empty:
            continue
        fig.add_scatter(
            x=part[x],
            y=part["accuracy"],
            mode="markers",
            name=ROLES[role],
            marker=dict(
                size=12 if role == "baseline" else 10,
                symbol=symbols[role],
                color=ROLE_COLORS[role],
                opacity=0.85,
                line=dict(color="white", width=1) if role != "baseline" else dict(color=ROLE_COLORS[role], width=2),
            ),
            customdata=part["run"],
            text=part["label"],
            hovertemplate="%{text}<br>%{y:.2f} %, %{x:,.4g}<br>run %{customdata}<extra></extra>",
        )
    edge = frontier(data, x) if len(data) else data
    if len(edge):
        fig.add_scatter(
            x=edge[x],
            y=edge["accuracy"],
            mode="lines",
            line=dict(color="#333", dash="dot", shape="hv"),
            name="frontier",
            hoverinfo="skip",
        )
    fig.update_xaxes(title_text=PARETO_AXES.get(x, x), type="log")
    fig.update_yaxes(title_text="test accuracy (%)")
    fig.update_layout(
        template="plotly_white",
        margin=dict(l=10, r=10, t=40, b=10),
        legend=dict(orientation="h", x=0, y=1.02, yanchor="bottom"),
        clickmode="event+select",
    )
    return fig

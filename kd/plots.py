"""Plotly figures built from the trainer's events and the per-model metrics.

Shared by the dashboard pages and the reports, so nothing here imports streamlit. A model keeps
its colour and its name on every chart (kd.events.STAGE_TITLES, COLORS), and every axis says its unit.
Curves are downsampled before plotting so a page with 10,000+ step events redraws quickly.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.colors import qualitative, sample_colorscale
from plotly.subplots import make_subplots

from kd.events import FINISHED, STAGE_TITLES, STAGES, Epoch, RunStarted, StageEnded, StageStarted, Step, parse

MODELS, LABELS = STAGES, STAGE_TITLES  # the names pages/*.py know them by
COLORS = {"teacher": "#0072B2", "baseline": "#E69F00", "student": "#009E73"}  # Okabe-Ito: colour-blind safe
TERM_LABELS = {
    "ce": "CE",
    "soft": "soft (T²·KL)",
    "tckd": "TCKD (target class)",
    "nckd": "NCKD (other classes)",
    "inter": "inter-class (1 − ρ)",
    "intra": "intra-class (1 − ρ)",
    "hint": "hint (MSE)",
    "at": "attention maps",
    "distance": "RKD distances",
    "angle": "RKD angles",
}  # loss_<term> -> legend text; unknown terms keep their name
TERM_DASHES = ("dot", "dash", "dashdot", "longdash")
GREY = "#7F7F7F"
STEP_COLUMNS = ["stage", "epoch", "step", "loss", "lr", "samples_per_s", "total_steps", "epochs"]  # loss_* after "loss"
EPOCH_COLUMNS = ["stage", "epoch", "epochs", "train_acc", "val_acc", "val_loss", "seconds"]
GL_THRESHOLD = 1000  # WebGL only for long series: browsers cap live WebGL contexts (~16 per page)


def _style(fig: go.Figure, *, unified: bool = False, top: int = 40, legend_y: float = 1.02, **layout) -> go.Figure:
    """The common look: white template, compact margins, horizontal legend above the plot."""
    fig.update_layout(
        template="plotly_white",
        margin=dict(l=10, r=10, t=top, b=10),
        legend=dict(orientation="h", x=0, xanchor="left", y=legend_y, yanchor="bottom"),
        hovermode="x unified" if unified else "closest",
        **layout,
    )
    fig.update_xaxes(automargin=True)
    fig.update_yaxes(automargin=True)
    return fig


def _stages(df: pd.DataFrame) -> list[str]:
    """The three models first in their fixed order, then any other stage names as they appear."""
    present = list(dict.fromkeys(df["stage"])) if len(df) else []
    return [s for s in STAGES if s in present] + [s for s in present if s not in STAGES]


def _loss_terms(df: pd.DataFrame) -> list[str]:
    return [c for c in df.columns if c.startswith("loss_")]


# -- events -> frames -------------------------------------------------------------------------
def events_frames(stored: Iterable[dict]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(steps, epochs) frames from the stored event dicts (kd.Step and Epoch; each term of
    the loss a "loss_<name>" column); events of other kinds are ignored."""
    parsed = [parse(d) for d in stored]
    steps = [e for e in parsed if isinstance(e, Step)]
    epochs = [e for e in parsed if isinstance(e, Epoch)]
    terms = list(dict.fromkeys(t for e in steps for t in e.terms))  # order of first use
    # Built column by column (one list per column), never row-by-row appends.
    step_columns = {c: [getattr(e, c) for e in steps] for c in STEP_COLUMNS}
    step_columns.update({f"loss_{t}": [e.terms.get(t) for e in steps] for t in terms})
    step_df = pd.DataFrame(step_columns, columns=STEP_COLUMNS[:4] + [f"loss_{t}" for t in terms] + STEP_COLUMNS[4:])
    epoch_df = pd.DataFrame({c: [getattr(e, c) for e in epochs] for c in EPOCH_COLUMNS}, columns=EPOCH_COLUMNS)
    for df in (step_df, epoch_df):  # None (e.g. no validation set) -> NaN, so numbers stay numeric
        num = [c for c in df.columns if c != "stage"]
        df[num] = df[num].apply(pd.to_numeric, errors="coerce")
    # Where in its stage each window ends, in epochs (fractional); older runs' steps lack the
    # stage's epochs: their x is the step count.
    per_epoch = step_df["total_steps"] / step_df["epochs"]
    step_df["at_epoch"] = (step_df["step"] / per_epoch).where(per_epoch.notna(), step_df["step"])
    return step_df, epoch_df


def downsample(df: pd.DataFrame, max_points: int = 1500, by: str | None = "stage") -> pd.DataFrame:
    """At most max_points evenly spread rows per group (first and last always kept), order kept."""
    max_points = max(2, int(max_points))
    groups = (
        df.groupby(by, sort=False).indices.values() if by and by in df.columns and len(df) else [np.arange(len(df))]
    )
    keep = []
    for pos in groups:  # pos: positions of the group's rows, ascending
        if len(pos) > max_points:
            pos = pos[np.unique(np.linspace(0, len(pos) - 1, max_points).round().astype(int))]
        keep.append(pos)
    return df.iloc[np.sort(np.concatenate(keep))] if keep else df


# -- training curves --------------------------------------------------------------------------
def loss_figure(steps: pd.DataFrame, max_points: int = 1500) -> go.Figure:
    """Training loss vs step, per stage: the total solid, each weighted term thinner and dashed."""
    fig = go.Figure()
    data = downsample(steps, max_points)
    for stage in _stages(data):
        sub = data[data["stage"] == stage]
        label, color = STAGE_TITLES.get(stage, stage), COLORS.get(stage, GREY)
        scatter = go.Scattergl if len(sub) > GL_THRESHOLD else go.Scatter
        fig.add_trace(
            scatter(
                x=sub["at_epoch"],
                y=sub["loss"],
                mode="lines",
                name=label,
                legendgroup=stage,
                line=dict(color=color, width=2),
            )
        )
        terms = [c for c in _loss_terms(sub) if sub[c].notna().any()]
        if len(terms) < 2:  # a single term is the total itself: drawing it again only hides it
            continue
        for i, col in enumerate(terms):
            ok = sub[col].notna()
            name = col[len("loss_") :]
            fig.add_trace(
                scatter(
                    x=sub["at_epoch"][ok],
                    y=sub[col][ok],
                    mode="lines",
                    legendgroup=stage,
                    name=f"{label}: {TERM_LABELS.get(name, name)}",
                    line=dict(color=color, width=1, dash=TERM_DASHES[i % len(TERM_DASHES)]),
                )
            )
    fig.update_xaxes(title_text="epoch (within stage)")
    fig.update_yaxes(title_text="loss (log scale)", type="log")  # every term readable, the T²-weighted soft term too
    return _style(fig, unified=True)


def accuracy_figure(epochs: pd.DataFrame) -> go.Figure:
    """Train (dashed) and validation (solid) accuracy in % per epoch, per stage."""
    fig = go.Figure()
    for stage in _stages(epochs):
        sub = epochs[epochs["stage"] == stage]
        label, color = STAGE_TITLES.get(stage, stage), COLORS.get(stage, GREY)
        for col, kind, dash in (("val_acc", "val", "solid"), ("train_acc", "train", "dash")):
            if sub[col].notna().any():  # no validation split -> no val curve
                fig.add_trace(
                    go.Scatter(
                        x=sub["epoch"],
                        y=sub[col] * 100,
                        mode="lines+markers",
                        name=f"{label} ({kind})",
                        legendgroup=stage,
                        line=dict(color=color, dash=dash),
                        marker=dict(size=5),
                    )
                )
    fig.update_xaxes(title_text="epoch")
    fig.update_yaxes(title_text="accuracy (%)")
    return _style(fig, unified=True)


def progress(stored: Iterable[dict]) -> dict[str, float]:
    """Per stage, the fraction done in [0, 1]: last step / total steps; 1.0 once the stage
    finished (done or loaded), where it was for a stage that stopped or diverged."""
    out = {s: 0.0 for s in STAGES}
    ended: set[str] = set()
    for e in map(parse, stored):
        if isinstance(e, StageStarted):
            out[e.stage] = 0.0
            ended.discard(e.stage)
        elif isinstance(e, StageEnded):
            if e.status in FINISHED:
                out[e.stage] = 1.0
            ended.add(e.stage)
        elif isinstance(e, Step) and e.stage not in ended and e.total_steps:
            out[e.stage] = min(1.0, max(0.0, e.step / e.total_steps))
    return out


def run_notes(stored: Iterable[dict]) -> list[str]:
    """How a person's file was read (label column, splits), what the teacher's outputs cost (the
    last stage's note: cached or per batch, how big) and what the method learned (its last epoch
    report, e.g. CTKD's temperature), in words."""
    cached, learned, data = None, None, []
    for e in map(parse, stored):
        if isinstance(e, RunStarted):
            data = e.data_notes or []
        elif isinstance(e, StageStarted) and e.teacher_outputs:
            cached = e.teacher_outputs
        elif isinstance(e, Epoch) and e.method:
            learned = e.method
    out = [*data, *([cached] if cached else [])]
    return out + ([", ".join(f"learned {k} = {v:.3g}" for k, v in learned.items())] if learned else [])


# -- runs ------------------------------------------------------------------------------------------
def group_table(table: pd.DataFrame, by: str) -> pd.DataFrame:
    """The Runs page's table (a row per run: name, gain (points), distilled acc %, ... and a
    column per differing setting) summarised per value of the column `by`: how many runs, the
    gain's mean and spread, the distilled student's mean accuracy, and the run with the best gain."""
    rows = []
    for value, part in table.groupby(table[by].astype(str), sort=False, dropna=False):
        gain, acc = part["gain (points)"].dropna(), part["distilled acc %"].dropna()
        best = part.loc[gain.idxmax(), "name"] if len(gain) else ""
        rows.append(
            {
                by: value,
                "runs": len(part),
                "mean gain (points)": round(gain.mean(), 2) if len(gain) else None,
                "gain std": round(gain.std(), 2) if len(gain) > 1 else None,
                "mean distilled acc %": round(acc.mean(), 2) if len(acc) else None,
                "best run": best,
            }
        )
    out = pd.DataFrame(rows)
    order = pd.to_numeric(out[by], errors="coerce")  # 1, 2, 10 in that order where the values are numbers
    return out.iloc[order.argsort(kind="stable") if order.notna().all() else out[by].argsort(kind="stable")]


# -- results ----------------------------------------------------------------------------------
def _num(v) -> float:
    return float(v) if v is not None else math.nan


def metrics_frame(models: dict[str, dict]) -> pd.DataFrame:
    """One row per model present (STAGES order, index = model key); accuracy and agreement in %."""
    rows, keys = [], [k for k in STAGES if k in models]
    for k in keys:
        m = models[k]
        rows.append(
            {
                "model": STAGE_TITLES[k],
                "accuracy": _num(m.get("accuracy")) * 100,
                "params": _num(m.get("params")),
                "size_mb": _num(m.get("size_mb")),
                "mflops": _num(m.get("flops")) / 1e6,
                "latency_ms": _num(m.get("latency_ms")),
                "latency_ms_256": _num(m.get("latency_ms_256")),
                "agreement": _num(m.get("agreement")) * 100,
                "ece": _num(m.get("ece")),
                "train_seconds": _num(m.get("train_seconds")),
            }
        )
    cols = [
        "model",
        "accuracy",
        "params",
        "size_mb",
        "mflops",
        "latency_ms",
        "latency_ms_256",
        "agreement",
        "ece",
        "train_seconds",
    ]
    return pd.DataFrame(rows, columns=cols, index=pd.Index(keys, name="key"))


METRIC_TITLES = {  # metrics_frame column -> table header with its unit, short: ten fit in 800 px
    "model": "model",
    "accuracy": "test acc %",
    "params": "params",
    "size_mb": "MB",
    "mflops": "MFLOPs/ex",
    "latency_ms": "ms @1",
    "latency_ms_256": "ms @256",
    "latency_iqr_256": "IQR @256",
    "agreement": "agrees %",
    "ece": "ECE",
    "train_seconds": "train s",
}


def metrics_table(models: dict[str, dict]) -> pd.DataFrame:
    """metrics_frame for people: headers with units, sensible rounding, integers for counts."""
    frame = metrics_frame(models)
    out = frame.round(
        {
            "accuracy": 2,
            "size_mb": 3,
            "mflops": 3,
            "latency_ms": 3,
            "latency_ms_256": 2,
            "agreement": 1,
            "ece": 3,
            "train_seconds": 1,
        }
    )
    out["params"] = out["params"].astype("Int64")
    spread = [models[k].get("latency_ms_256_quartiles") for k in frame.index]
    if any(spread):  # the middle half of the timed rounds, beside the median
        at = list(out.columns).index("latency_ms_256") + 1
        out.insert(at, "latency_iqr_256", [f"{q[0]:.2f}–{q[2]:.2f}" if q else "" for q in spread])
    return out.rename(columns=METRIC_TITLES)


def compact(v: float, digits: int = 4) -> str:
    """535812 -> '535.8k', 2.1438 -> '2.144', 0.0123 -> '0.0123' (SI suffixes only upwards)."""
    if v is None or not math.isfinite(v):
        return ""
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(v) >= scale:
            return f"{v / scale:.{digits}g}{suffix}"
    return f"{v:.{digits}g}"


COMPARISON = (  # (metrics_frame column, subplot title = axis unit, bar label format)
    ("accuracy", "test accuracy (%, zoomed)", lambda v: f"{v:.2f}" if math.isfinite(v) else ""),
    ("params", "parameters", compact),
    ("size_mb", "size (MB)", lambda v: compact(v, 3)),
    ("mflops", "MFLOPs / example", lambda v: compact(v, 3)),
    ("latency_ms_256", "ms / batch of 256", lambda v: compact(v, 3)),
)  # latency: the median; where the run kept them, whiskers from its first to its third quartile


def comparison_figure(models: dict[str, dict]) -> go.Figure:
    """Five small bar charts (2 x 3 grid reads better than 1 x 5 at ~600 px), one bar per model."""
    frame = metrics_frame(models)
    fig = make_subplots(
        rows=2,
        cols=3,
        specs=[[{}, {}, {}], [{}, {}, None]],
        subplot_titles=[title for _, title, _ in COMPARISON],
        vertical_spacing=0.16,
        horizontal_spacing=0.12,
    )
    for i, (col, title, fmt) in enumerate(COMPARISON):
        row, c = divmod(i, 3)
        for key, value in frame[col].items():
            spread = models[key].get("latency_ms_256_quartiles") if col == "latency_ms_256" else None
            fig.add_trace(
                go.Bar(
                    x=[STAGE_TITLES[key]],
                    y=[value],
                    error_y=(  # the median's bar, the middle half of the timed rounds as whiskers
                        dict(type="data", symmetric=False, array=[spread[2] - value], arrayminus=[value - spread[0]])
                        if spread
                        else None
                    ),
                    name=STAGE_TITLES[key],
                    legendgroup=key,
                    showlegend=i == 0,
                    marker_color=COLORS[key],
                    text=[fmt(value)],
                    texttemplate="%{text}",
                    textposition="outside",
                    cliponaxis=False,
                    hovertemplate=f"%{{x}}<br>{title}: %{{y:,.4~g}}<extra></extra>",
                ),
                row=row + 1,
                col=c + 1,
            )
        top, low = frame[col].max(), frame[col].min()
        if col == "accuracy" and math.isfinite(low):  # from 0, a 2-point difference is invisible
            gap = max(top - low, 1.0)
            fig.update_yaxes(range=[max(0.0, low - 2 * gap), top + 0.6 * gap], row=row + 1, col=c + 1)
        elif math.isfinite(top) and top > 0:  # headroom so the outside labels stay inside the panel
            fig.update_yaxes(range=[0, top * 1.22], row=row + 1, col=c + 1)
        # SI prefixes read well for counts (160k) but not below 1 (0.4 MB would show as 400m)
        fig.update_yaxes(tickformat="~s" if col in ("params", "flops") else "~g", row=row + 1, col=c + 1)
    fig.update_xaxes(showticklabels=False)  # the legend names the colours; labels would collide
    return _style(fig, top=70, legend_y=1.08, height=460, bargap=0.25, uniformtext_minsize=9)


def confusion_figure(matrix: list[list[int]], class_names: list[str], title: str) -> go.Figure:
    """Counts[true][predicted] as a heatmap, class 0 at the top left."""
    z = np.asarray(matrix)
    names = [str(c) for c in class_names]
    fig = go.Figure(
        go.Heatmap(
            z=z,
            x=names,
            y=names,
            colorscale="Blues",
            showscale=False,
            text=z,
            texttemplate="%{text}" if len(names) <= 20 else None,
            hovertemplate="true %{y}, predicted %{x}: %{z}<extra></extra>",
        )
    )
    fig.update_xaxes(title_text="predicted class", type="category", side="bottom", constrain="domain")
    fig.update_yaxes(
        title_text="true class", type="category", autorange="reversed", scaleanchor="x", constrain="domain"
    )
    return _style(fig, title=dict(text=title, x=0, xanchor="left"), top=40, height=420)


def reliability_figure(models: dict[str, dict]) -> go.Figure:
    """Accuracy vs mean confidence per non-empty bin; points on the diagonal are calibrated."""
    fig = go.Figure(
        go.Scatter(
            x=[0, 100],
            y=[0, 100],
            mode="lines",
            name="perfect calibration",
            line=dict(color=GREY, dash="dash", width=1),
            hoverinfo="skip",
        )
    )
    for key in STAGES:
        bins = [b for b in (models.get(key) or {}).get("reliability") or [] if b["count"] > 0]
        if not bins:
            continue
        ece = models[key].get("ece")
        fig.add_trace(
            go.Scatter(
                x=[b["confidence"] * 100 for b in bins],
                y=[b["accuracy"] * 100 for b in bins],
                customdata=[b["count"] for b in bins],
                mode="lines+markers",
                line=dict(color=COLORS[key]),
                name=f"{STAGE_TITLES[key]} (ECE {ece:.3f})" if ece is not None else STAGE_TITLES[key],
                hovertemplate="confidence %{x:.1f}%<br>accuracy %{y:.1f}%<br>%{customdata} examples",
            )
        )
    fig.update_xaxes(title_text="confidence (%)", range=[0, 100], constrain="domain")
    fig.update_yaxes(title_text="accuracy (%)", range=[0, 100], scaleanchor="x", constrain="domain")
    return _style(fig, height=480)


def _class_colors(k: int) -> list[str]:
    palette = qualitative.Safe  # colour-blind safe, 11 colours; repeats beyond that
    return [palette[i % len(palette)] for i in range(k)]


def boundary_figure(xx, yy, predictions: dict, points, labels, class_names) -> go.Figure:
    """Decision regions of each model on a 2-D grid, with the test points on top (true labels)."""
    xx, yy = np.asarray(xx), np.asarray(yy)
    points, labels = np.asarray(points), np.asarray(labels)
    keys = [k for k in STAGES if k in predictions] + [k for k in predictions if k not in STAGES]
    k = len(class_names)
    colors = _class_colors(k)
    # Discrete colour scale: class i owns the band [i - 0.5, i + 0.5] of z.
    scale = [[edge, colors[i]] for i in range(k) for edge in (i / k, (i + 1) / k)]
    fig = make_subplots(
        rows=1, cols=len(keys), subplot_titles=[STAGE_TITLES.get(m, m) for m in keys], horizontal_spacing=0.04
    )
    for j, key in enumerate(keys, start=1):
        z = np.asarray(predictions[key]).reshape(xx.shape)
        fig.add_trace(
            go.Heatmap(
                x=xx[0],
                y=yy[:, 0],
                z=z,
                colorscale=scale,
                zmin=-0.5,
                zmax=k - 0.5,
                opacity=0.35,
                showscale=False,
                hoverinfo="skip",
            ),
            row=1,
            col=j,
        )
        for c, name in enumerate(class_names):
            sel = labels == c
            fig.add_trace(
                go.Scatter(
                    x=points[sel, 0],
                    y=points[sel, 1],
                    mode="markers",
                    name=f"class {name}",
                    legendgroup=f"class{c}",
                    showlegend=j == 1,
                    marker=dict(size=5, color=colors[c], line=dict(width=0.6, color="#222")),
                ),
                row=1,
                col=j,
            )
        anchor = "x" if j == 1 else f"x{j}"
        fig.update_xaxes(title_text="x1", range=[xx.min(), xx.max()], constrain="domain", row=1, col=j)
        fig.update_yaxes(
            title_text="x2" if j == 1 else None,
            range=[yy.min(), yy.max()],
            scaleanchor=anchor,
            scaleratio=1,
            constrain="domain",
            row=1,
            col=j,
        )
    return _style(fig, top=60, legend_y=1.1, height=360)


# -- temperature ------------------------------------------------------------------------------
def temperature_figure(probs: dict[float, np.ndarray], class_names) -> go.Figure:
    """The teacher's softened probabilities for one example, grouped per temperature."""
    temps = sorted(probs)
    shades = (
        [COLORS["teacher"]] if len(temps) == 1 else sample_colorscale("Blues", list(np.linspace(0.35, 1.0, len(temps))))
    )  # hotter = lighter
    names = [str(c) for c in class_names]
    fig = go.Figure()
    for t, shade in zip(temps, reversed(shades) if len(temps) > 1 else shades):
        fig.add_trace(
            go.Bar(
                x=names,
                y=np.asarray(probs[t], dtype=float),
                name=f"T = {t:g}",
                marker_color=shade,
                hovertemplate="class %{x}: %{y:.3f}<extra></extra>",
            )
        )
    fig.update_xaxes(title_text="class", type="category")
    fig.update_yaxes(title_text="probability", range=[0, 1])
    return _style(fig, barmode="group", showlegend=len(temps) > 1)


def entropy_figure(
    temps: np.ndarray, entropy: np.ndarray, current_T: float | None = None, num_classes: int | None = None
) -> go.Figure:
    """Entropy of the softened distribution vs T; it climbs towards log2(K) (uniform) as T grows."""
    temps, entropy = np.asarray(temps, dtype=float), np.asarray(entropy, dtype=float)
    fig = go.Figure(
        go.Scatter(x=temps, y=entropy, mode="lines", name="entropy", line=dict(color=COLORS["teacher"], width=2))
    )
    if num_classes:
        fig.add_hline(
            y=math.log2(num_classes),
            line=dict(color=GREY, dash="dash", width=1),
            annotation_text=f"uniform ({math.log2(num_classes):.2f} bits)",
            annotation_position="bottom right",
        )
    if current_T is not None:
        fig.add_vline(x=current_T, line=dict(color=GREY, dash="dot", width=1))
        fig.add_trace(
            go.Scatter(
                x=[current_T],
                y=[np.interp(current_T, temps, entropy)],
                mode="markers",
                name=f"T = {current_T:g}",
                marker=dict(color=COLORS["teacher"], size=10),
            )
        )
    fig.update_xaxes(title_text="temperature T")
    fig.update_yaxes(title_text="entropy (bits)", rangemode="tozero")
    return _style(fig, unified=True, showlegend=False)


# The sweep's figures live in their own file; pages reach them here, as every figure.
from kd.plots_sweep import (  # noqa: E402, F401
    PARETO_AXES,
    best_cell,
    pareto_figure,
    pareto_frame,
    seeds_figure,
    sweep_frame,
    sweep_heatmap,
    value_text,
)


def signals_figure(x: np.ndarray, y: np.ndarray, class_names) -> go.Figure:
    """A few 1-D signals (N, C, L) as lines, one colour a class (the first channel; the others
    dotted): what a person's npz of signals looks like before it trains."""
    colors = _class_colors(len(class_names))
    fig = go.Figure()
    shown = set()
    for signal, label in zip(x, y):
        for ch, values in enumerate(signal[:3]):
            fig.add_scatter(
                y=values,
                mode="lines",
                name=str(class_names[label]),
                legendgroup=str(label),
                showlegend=int(label) not in shown and ch == 0,
                line=dict(color=colors[int(label)], width=1, dash="solid" if ch == 0 else "dot"),
            )
            shown.add(int(label))
    return _style(fig, xaxis_title="sample", yaxis_title="value", height=260)


def image_array(x: np.ndarray) -> np.ndarray:
    """One image (C, H, W) in [0, 1] as st.image takes it: (H, W) grey or (H, W, 3) colour, uint8."""
    a = np.clip(np.asarray(x, dtype=np.float32), 0.0, 1.0)
    a = a[:3].transpose(1, 2, 0) if a.shape[0] in (3, 4) else a[0]  # 2 or 5+ channels: the first, grey
    return (a * 255).round().astype(np.uint8)


def latency_table(result: dict) -> pd.DataFrame:
    """An export's latencies (kd.export.latency, per runtime; its int8 copy's too) as a table:
    a row per runtime, "p50 / p95" ms at batch 1 and 256, one thread and every core."""
    rows = dict(result.get("latency_ms") or {})
    rows.update({f"int8 {k}": v for k, v in ((result.get("int8") or {}).get("latency_ms") or {}).items()})
    out = []
    for runtime, lat in rows.items():
        row = {"runtime": runtime}
        for threads in ("1 thread", "all threads"):
            for batch in ("batch 1", "batch 256"):
                cell = lat.get(threads, {}).get(batch)
                row[f"{batch}, {threads}"] = f"{cell['p50']:.3g} / {cell['p95']:.3g}" if cell else ""
        out.append(row)
    return pd.DataFrame(out)

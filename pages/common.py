"""Helpers shared by the pages (st.navigation does not scan this folder, so it is no page)."""

from __future__ import annotations

import re

import streamlit as st

from kd import service
from kd.errors import KDError


def _hand_over_to_the_router() -> None:
    """A server that has just started runs a URL such as /live directly as pages/live.py
    (Streamlit's older pages/-folder mode) until app.py has called st.navigation once. Leave
    that mode and rerun, so app.py's navigation serves the same URL with its query string."""
    try:
        from streamlit.runtime.pages_manager import PagesManager
    except ImportError:  # another Streamlit layout: nothing to hand over
        return
    if getattr(PagesManager, "uses_pages_directory", False):
        PagesManager.uses_pages_directory = False
        st.rerun()


_hand_over_to_the_router()

STATUS_ICONS = {
    "queued": ":material/schedule:",
    "running": ":material/directions_run:",
    "done": ":material/check_circle:",
    "stopped": ":material/stop_circle:",
    "diverged": ":material/trending_up:",
    "failed": ":material/error:",
    "interrupted": ":material/warning:",
}  # markdown only: st.dataframe shows plain text


def check_store() -> None:
    """A run store that cannot be used (damaged, not writable) is one message on the page, which
    ends there. Each page calls this first (the service checks at most every few seconds)."""
    try:
        service.check_store()
    except KDError as e:
        st.error(plain(str(e)), icon=":material/database:")
        st.stop()


WORD_JOINER = "\u2060"  # invisible; breaks the pattern the page's renderer links by itself


def plain(text: str) -> str:
    """Text from a URL, a file or a person, escaped so markdown shows it as it is: no link, no
    image, no formatting, no colour or icon directive. Markdown escapes alone do not stop the
    renderer from linking bare addresses (https://..., www...., a@b), so an invisible word
    joiner goes inside each of those."""
    out = re.sub(r"([\\`*_{}\[\]()<>#+\-.!|~:$&^=\"'])", r"\\\1", str(text))
    out = out.replace("\\://", "\\:" + WORD_JOINER + "//").replace("@", WORD_JOINER + "@")
    out = re.sub(r"(?i)\bwww\\\.", lambda m: m.group(0)[:3] + WORD_JOINER + "\\.", out)
    return out.replace("\n", "  \n")


def current_run() -> service.RunInfo | None:
    """The run named by ?run=ID in the URL, or None without one; for an id that names no run,
    the error and a link to the Runs page, and the page stops there."""
    run_id = st.query_params.get("run")
    if not run_id:
        return None
    run = service.get_run(run_id)
    if run is None:  # only the error: never another run's page under this URL
        st.error(f"No such run: {plain(repr(run_id))}.")
        st.page_link("pages/runs.py", label="Pick one on the Runs page", icon=":material/list:")
        st.stop()
    return run


def run_label(run: service.RunInfo, status: bool = True) -> str:
    """A run as a line: its name (given, or made from its settings), pair, id and state."""
    c = run.config
    return (
        f"{service.names([run])[run.id]} · {c['teacher']} → {c['student']} · {run.id}"
        + (f" · students on {c['student_fraction']:.0%}" if c.get("student_fraction", 1) < 1 else "")
        + (f" · {run.state}" if status else "")
    )


def setting(
    name: str,
    where=st,
    options: list | None = None,
    format_func=None,
    disabled: bool = False,
    start: dict | None = None,
):
    """The Train page's widget for one RunConfig field, made from its declaration (kd/config.py):
    its label, help, default, range and choices; `options` narrows the choices (e.g. the devices
    present); `start`: the form's starting values (a link's, or the last ones used), else the
    default. Returns the value as RunConfig takes it."""
    f = service.field(name)
    value = (start or {}).get(name, f.default)
    return widget(name, f.knob, value, f.kind, f.optional, where, options, format_func, disabled)


def method_setting(name: str, where=st, options: list | None = None, start: dict | None = None):
    """The widget for a method's own knob (kd.schema.option), declared in the method's file;
    `options`: the values to pick from (a model's taps); `start` as for setting()."""
    f = service.method_option(name)
    value = ((start or {}).get("options") or {}).get(name, f.default)
    return widget(name, f.knob, value, f.kind, f.optional, where, options)


def widget(
    name: str,
    k,
    default,
    kind: type,
    optional: bool,
    where=st,
    options: list | None = None,
    format_func=None,
    disabled: bool = False,
):
    """A selectbox for a choice, a number input for a number, a text input for text; label, help,
    range and default from the declaration."""
    choices = options or k.options or (k.choices() if callable(k.choices) else k.choices)
    if choices is not None:
        choices = list(choices)
        fmt = format_func or ((lambda v: "all of it" if v == 1 else f"{v:.0%}") if k.share else str)
        return where.selectbox(
            k.label,
            choices,
            index=choices.index(default) if default in choices else 0,
            format_func=fmt,
            help=k.help,
            disabled=disabled,
            key=f"setting_{name}",
        )
    if kind is bool:
        return where.checkbox(k.label, value=bool(default), help=k.help, disabled=disabled, key=f"setting_{name}")
    if kind is int:
        return where.number_input(
            k.label,
            min_value=int(k.lo),
            max_value=int(k.hi),
            value=default,
            step=1,
            help=k.help,
            disabled=disabled,
            key=f"setting_{name}",
            placeholder="same as epochs" if optional else None,
        )
    if kind is float:
        return where.number_input(
            k.label,
            min_value=float(k.lo),
            max_value=float(k.hi),
            value=float(default),
            format="%.4g",
            help=k.help,
            disabled=disabled,
            key=f"setting_{name}",
        )
    text = where.text_input(k.label, value=default or "", help=k.help, disabled=disabled, key=f"setting_{name}")
    return text or (None if optional else text)


def show_error(e: Exception) -> None:
    """A KDError is the person's to fix: show its message as is (as text), never a traceback."""
    st.error(plain(str(e)) if isinstance(e, KDError) else f"Unexpected error: {plain(str(e))}")

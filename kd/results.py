"""Measured figures a page may cite, read from the dated results files that the bench scripts
write (bench/results/*.json: command, commit, machine, date, figures). No measured figure is
typed into the code: where no results file has it, the answer is None, and the page says
nothing rather than a stale number."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

RESULTS = Path(__file__).resolve().parents[1] / "bench" / "results"
NOT_COMPARED = ("seed", "device")  # the measured runs may differ from the cited config in these


def _same(stored: dict, wanted: dict, ignored: tuple[str, ...]) -> bool:
    """A stored config is `wanted` (keys in `ignored` aside); a setting added since it was stored
    counts as its default (kd.config.RunConfig), as the run that stored it trained with it."""
    from kd.config import RunConfig

    full = {**RunConfig().to_dict(), **stored}
    return {k: v for k, v in full.items() if k not in ignored} == {k: v for k, v in wanted.items() if k not in ignored}


def seeds_result(config: dict, folder: Path = RESULTS) -> dict | None:
    """The newest bench/seeds.py results file (seeds-DATE-TIME.json) whose runs all used `config`
    (a RunConfig as a dict), seed and device aside:
    {"file", "date", "seeds", "gains": distilled minus alone in test-accuracy points per seed,
    "wall_s": the median seconds of one run}. None when no file matches."""
    for path in sorted(folder.glob("seeds-*.json"), reverse=True):  # the names sort by date
        try:
            result = json.loads(path.read_text())
            runs = list(result["runs"].values())
            if not runs or any(not _same(r["config"], config, NOT_COMPARED) for r in runs):
                continue
            return {
                "file": f"bench/results/{path.name}",
                "date": result["date"][:10],
                "seeds": result["seeds"],
                "gains": [r["test_error"]["baseline"] - r["test_error"]["student"] for r in runs],
                "wall_s": statistics.median(r["wall_s"] for r in runs),
            }
        except (OSError, ValueError, KeyError, TypeError, AttributeError):  # not a file of this kind
            continue
    return None


def lockstep_cost(folder: Path = RESULTS) -> float | None:
    """What one more student costs in a lockstep group against training it alone, from the newest
    bench/sweep.py file: the sequential way's seconds per distilled student over the lockstep
    way's, inverted (0.5: half). None when there is no such file."""
    for path in sorted(folder.glob("sweep-*.json"), reverse=True):
        try:
            per_cell = json.loads(path.read_text())["digits"]["seconds_per_cell_distilled_only"]
            return per_cell["lockstep"] / per_cell["sequential"]
        except (OSError, ValueError, KeyError, TypeError, ZeroDivisionError):
            continue
    return None


def grid_result(config: dict, folder: Path = RESULTS) -> dict | None:
    """The newest bench/grids.py file's grid for the demo whose config is `config` (a RunConfig
    as a dict; T and alpha aside, the grid's axes): {"file", "date", "sweep": the sweep's JSON}.
    None when no file has it."""
    axes = ("temperature", "alpha", "seed", "device")
    for path in sorted(folder.glob("grids-*.json"), reverse=True):
        try:
            result = json.loads(path.read_text())
            for demo in result["demos"].values():
                if _same(demo["config"], config, axes):
                    return {"file": f"bench/results/{path.name}", "date": result["date"][:10], "sweep": demo["sweep"]}
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            continue
    return None


def best_cell(sweep: dict) -> dict | None:
    """The cell of a grid with the highest mean gain; None for a grid without one."""
    cells = [c for c in sweep.get("cells", []) if c.get("gain_mean") is not None]
    return max(cells, key=lambda c: c["gain_mean"]) if cells else None


def paying_cell(sweep: dict) -> dict | None:
    """best_cell, if its gain is above one standard deviation of its seeds (it pays, beyond
    noise); else None."""
    best = best_cell(sweep)
    return best if best and best["gain_mean"] > max(best["gain_std"] or 0.0, 0.0) else None

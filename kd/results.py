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


def seeds_result(config: dict, folder: Path = RESULTS) -> dict | None:
    """The newest bench/seeds.py results file (seeds-DATE-TIME.json) whose runs all used `config`
    (a RunConfig as a dict), seed and device aside:
    {"file", "date", "seeds", "gains": distilled minus alone in test-accuracy points per seed,
    "wall_s": the median seconds of one run}. None when no file matches."""
    wanted = {k: v for k, v in config.items() if k not in NOT_COMPARED}
    for path in sorted(folder.glob("seeds-*.json"), reverse=True):  # the names sort by date
        try:
            result = json.loads(path.read_text())
            runs = list(result["runs"].values())
            if not runs or any({k: v for k, v in r["config"].items() if k not in NOT_COMPARED} != wanted for r in runs):
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

"""A bench script's dated result file: bench/results/NAME-DATE-TIME.json with the command that
made it, the commit (and whether the tree had changes), the machine and the date, then the figures."""

import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def commit() -> str:
    """The short commit of this tree, with "+changes" where tracked files differ from it."""
    git = lambda *a: subprocess.run(["git", *a], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    return (git("rev-parse", "--short", "HEAD") or "unknown") + (
        "+changes" if git("status", "--porcelain", "--untracked-files=no") else ""
    )


def write(name: str, figures: dict) -> Path:
    """Write the figures with where they came from; returns the file's path."""
    result = {
        "command": "python " + " ".join([os.path.relpath(sys.argv[0], ROOT), *sys.argv[1:]]),
        "commit": commit(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "machine": f"{platform.platform()}, {os.cpu_count()} cores, python {platform.python_version()}",
        **figures,
    }
    out = ROOT / "bench" / "results" / f"{name}-{time.strftime('%Y-%m-%d-%H%M')}.json"
    out.write_text(json.dumps(result, indent=1) + "\n")
    return out

"""Screenshots of every page, at 1280x800 and at a narrow 420 px, into docs/screenshots/.

Starts the dashboard on a fresh run store, trains a digits run, a moons run and a few-labels
T x alpha sweep through the real CLI, then visits each page in headless chromium.

usage: python bench/screenshots.py [--out docs/screenshots]
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from dashboard import FLAGS, dashboard  # noqa: E402


def main() -> None:
    from playwright.sync_api import sync_playwright

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT / "docs" / "screenshots"))
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "KD_RUNS_DIR": tempfile.mkdtemp(prefix="kd-shots-")}

    def train(*flags: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "kd", "train", *flags, "--json"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        return json.loads(done.stdout)["run_id"]

    moons = train("--dataset", "moons", "--teacher", "hinton-1200", "--student", "mlp-128", "--epochs", "20")
    digits = train()
    grid = subprocess.run(  # a sweep: T x alpha over 3 seeds, for the Sweep and Pareto pages
        [sys.executable, "-m", "kd", "sweep", "--temperature", "1,2,4,8", "--alpha", "0.5,0.7,0.9", "--seeds", "0,1,2"]
        + ["--student-fraction", "0.05", "--batch-size", "16", "--epochs", "60", "--lr", "0.003", "--json"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    sweep = json.loads(grid.stdout)["sweep_id"]
    pages = {
        "home": "/",
        "train": "/train",
        "live": f"/live?run={digits}",
        "results": f"/results?run={digits}",
        "results-moons": f"/results?run={moons}",
        "runs": f"/runs?compare={digits},{moons}",
        "runs-grouped": "/runs",  # grouped by T: the sweep's cells are runs too
        "sweep": f"/sweep?sweep={sweep}",
        "pareto": "/pareto",
        "temperature": f"/temperature?run={digits}",
    }
    with dashboard(env) as base, sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=FLAGS)
        for width, height in ((1280, 800), (420, 800)):
            page = browser.new_page(viewport={"width": width, "height": height})
            for name, path in pages.items():
                page.goto(base + path)
                page.wait_for_load_state("networkidle")
                page.wait_for_timeout(4000)
                if name == "runs-grouped":
                    page.get_by_role("combobox", name="Group by").click()
                    page.get_by_role("option", name="temperature", exact=True).click()
                    page.wait_for_timeout(3000)
                assert page.locator("[data-testid='stException']").count() == 0, name
                # Streamlit scrolls inside its main block: grow the viewport to its full height
                for _ in range(3):  # charts below the first screen draw once shown, and make it taller
                    full = page.evaluate("document.querySelector('[data-testid=stMain]').scrollHeight")
                    page.set_viewport_size({"width": width, "height": max(height, min(full, 4000))})
                    page.wait_for_timeout(1500)
                page.screenshot(path=str(out / f"{name}-{width}.png"))
                page.set_viewport_size({"width": width, "height": height})
                print(f"{name}-{width}.png")
            page.close()
        browser.close()


if __name__ == "__main__":
    main()

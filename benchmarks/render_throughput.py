"""Batch render throughput: one process vs Ray Data with 1 and 2 workers, in one run.

Each mode is the command a user runs, `gen render JOBS --out DIR [--ray --workers N]`, in a
fresh process into a fresh folder, so every mode pays what it really costs: Python and
library imports, Ray's local start, actor start-up and the pipeline load. The modes are
alternated round-robin. "fixed s" is wall time minus the jobs' own time from the manifest
(start-up, loading, dispatch). Target: Ray overhead ≤ 15 % at 1 worker.

    python benchmarks/render_throughput.py [--jobs 60] [--size 256] [--steps 16] [--rounds 1]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

import torch  # noqa: E402
from timing import machine_description  # noqa: E402

MODES = {"single process": [], "Ray, 1 worker": ["--ray", "--workers", "1"],
         "Ray, 2 workers": ["--ray", "--workers", "2"]}


def run_mode(jobs: Path, out: Path, extra: list[str]) -> tuple[float, float]:
    """Wall seconds of one `gen render` command, and the sum of its jobs' own seconds."""
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "gen", "render", str(jobs), "--out", str(out), *extra], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, "PYTHONPATH": str(ROOT)})
    wall = time.perf_counter() - started
    records = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    if len(records) != jobs.read_text().count("\n") or any(r["status"] != "ok" for r in records):
        raise SystemExit(f"{out}: not every job finished")
    return wall, sum(r["seconds"] for r in records)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=60)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=16)
    parser.add_argument("--model", default="tiny-sd")
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()

    results: dict[str, list[tuple[float, float]]] = {mode: [] for mode in MODES}
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        jobs = folder / "jobs.jsonl"
        jobs.write_text("\n".join(json.dumps({"kind": "image", "id": f"j{i}", "prompt": f"picture {i}",
                                               "model": args.model, "width": args.size, "height": args.size,
                                               "steps": args.steps, "seed": i}) for i in range(args.jobs)) + "\n")
        warm = folder / "warm.jsonl"  # builds the tiny preset once, outside the timed runs
        warm.write_text(jobs.read_text().splitlines()[0] + "\n")
        run_mode(warm, folder / "warm", [])
        for round_ in range(args.rounds):
            for index, (mode, extra) in enumerate(MODES.items()):
                results[mode].append(run_mode(jobs, folder / f"r{round_}-{index}", extra))
                print(f"round {round_ + 1}, {mode}: {results[mode][-1][0]:.1f} s", file=sys.stderr)

    single = statistics.median(wall for wall, _ in results["single process"])
    print(f"# render throughput, {machine_description(torch.device('cpu'))}, {args.jobs} image jobs "
          f"({args.model}, {args.size}², {args.steps} steps), {args.rounds} round(s), {time.strftime('%Y-%m-%d')}")
    print("| mode | wall s | jobs' own s | fixed s | jobs/min | overhead vs single process |")
    print("|---|---|---|---|---|---|")
    for mode, runs in results.items():
        wall = statistics.median(w for w, _ in runs)
        own = statistics.median(o for _, o in runs)
        fixed = f"{wall - own:.1f}" if "2 workers" not in mode else "– (parallel)"
        print(f"| {mode} | {wall:.1f} | {own:.1f} | {fixed} | {60 * args.jobs / wall:.1f} | "
              f"{100 * (wall / single - 1):+.1f} % |")


if __name__ == "__main__":
    main()

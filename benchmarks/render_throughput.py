"""Batch render throughput: one process vs Ray Data with 1 and 2 workers, in one run.

N identical-cost image jobs on a tiny preset (CPU-feasible), each mode into a fresh folder.
Ray's start-up (a local cluster) is timed apart, so the table shows both the steady
throughput and the wall time including start-up. Target: Ray overhead ≤ 15 % at 1 worker.

    python benchmarks/render_throughput.py [--jobs 24] [--size 256] [--steps 12]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

import torch  # noqa: E402
from timing import machine_description  # noqa: E402

from gen.render import render  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=24)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--model", default="tiny-sd")
    args = parser.parse_args()
    import ray

    rows = []
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        jobs = folder / "jobs.jsonl"
        jobs.write_text("\n".join(json.dumps({"kind": "image", "id": f"j{i}", "prompt": f"picture {i}",
                                               "model": args.model, "width": args.size, "height": args.size,
                                               "steps": args.steps, "seed": i}) for i in range(args.jobs)) + "\n")
        render(jobs, folder / "warm", log=lambda line: None)  # builds the tiny preset, warms caches
        started = time.perf_counter()
        render(jobs, folder / "local", log=lambda line: None)
        local = time.perf_counter() - started
        rows.append(("single process", 0.0, local, local))
        for workers in (1, 2):
            started = time.perf_counter()
            ray.init(num_cpus=max(workers, torch.get_num_threads()), include_dashboard=False,
                     log_to_driver=False, configure_logging=False)
            ready = time.perf_counter()
            render(jobs, folder / f"ray{workers}", use_ray=True, workers=workers, log=lambda line: None)
            done = time.perf_counter()
            ray.shutdown()
            rows.append((f"Ray, {workers} worker(s)", ready - started, done - ready, done - started))
    print(f"# render throughput, {machine_description(torch.device('cpu'))}, {args.jobs} image jobs "
          f"({args.model}, {args.size}², {args.steps} steps), {time.strftime('%Y-%m-%d')}")
    print("| mode | Ray start s | jobs s | jobs/min | overhead vs single | incl. start: jobs/min | overhead |")
    print("|---|---|---|---|---|---|---|")
    for name, start, work, total in rows:
        print(f"| {name} | {start:.1f} | {work:.1f} | {60 * args.jobs / work:.1f} | {100 * (work / local - 1):+.1f} % | "
              f"{60 * args.jobs / total:.1f} | {100 * (total / local - 1):+.1f} % |")


if __name__ == "__main__":
    main()

"""Scale-out of `gen render` on Ray Data: the jobs become a dataset, an actor pool runs them.

Each actor keeps one pipeline loaded (jobs arrive grouped by model) and writes outputs
straight into the output folder, which must therefore be reachable from every node (a
shared file system on a cluster). The driver writes the manifest as results stream back,
exactly as the local run does. Actors receive the jobs' dict form and plan them again (the
same checks, the same output names), so what crosses the wire is a few strings per job,
not images or tensors.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from gen.batch import BatchJob, job_as_given
from gen.errors import GenError


class RenderWorker:
    """A Ray actor: plans the jobs it is handed and runs them with a cached pipeline."""

    def __init__(self, out_dir: str, threads: int):
        import torch

        from gen.jobs import PipelineCache

        torch.set_num_threads(threads)
        self.out_dir = Path(out_dir)
        self.pipelines = PipelineCache(quiet=True)

    def __call__(self, batch: dict) -> dict:
        from gen.batch import plan_batch_job, run_batch_job
        from gen.jobs import job_from_dict

        records = []
        for job, job_id, line, skip in zip(batch["job"], batch["id"], batch["line"], batch["skip"]):
            entry = plan_batch_job(job_from_dict(json.loads(job)), job_id, int(line), self.out_dir)
            entry.plan.skip = {Path(p) for p in json.loads(skip)}
            records.append(json.dumps(run_batch_job(entry, self.pipelines)))
        return {"record": records}


def _row(entry: BatchJob) -> dict[str, str | int]:
    # the actor names the outputs again, as the driver did
    return {"job": json.dumps(job_as_given(entry.job)), "id": entry.id, "line": entry.line,
            "skip": json.dumps([str(p) for p in entry.plan.skip])}


def run_on_ray(entries: list[BatchJob], out_dir: Path, address: str | None, workers: int,
               gpus_per_worker: float) -> Iterator[dict]:
    """Yield one manifest record per job, as the actors finish them."""
    import logging

    try:
        import ray
        import ray.data
    except ImportError:
        raise GenError("--ray needs Ray Data: pip install 'gen[distributed]'") from None
    if not entries:
        return
    import torch

    started_here = not ray.is_initialized()
    if started_here:
        if address:
            ray.init(address=address, log_to_driver=False, configure_logging=False)
        else:
            ray.init(num_cpus=max(workers, torch.get_num_threads()), include_dashboard=False,
                     log_to_driver=False, configure_logging=False)
    try:
        logging.getLogger("ray.data").setLevel(logging.ERROR)  # no notices about progress bars we turned off
        ray.data.DataContext.get_current().enable_progress_bars = False
        rows = [_row(entry) for entry in entries]
        # The driver's CPU threads are shared out between the actors (oversubscribing them made two
        # workers 4x slower than one). CPU results can depend on the thread count (reduction order):
        # one worker reproduces a single-process run bit for bit, more may differ by a pixel level.
        threads = max(1, torch.get_num_threads() // workers)
        dataset = ray.data.from_items(rows, override_num_blocks=len(rows)).map_batches(
            RenderWorker, fn_constructor_args=(str(out_dir), threads), batch_size=1,
            compute=ray.data.ActorPoolStrategy(size=workers), num_gpus=gpus_per_worker or None, num_cpus=1,
        )
        for row in dataset.iter_rows():
            yield json.loads(row["record"])
    finally:
        if started_here:
            ray.shutdown()

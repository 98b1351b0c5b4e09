"""One job of a batch: its id, where it came from, its plan under the output folder, and the
manifest record of running it. Shared by the local renderer (gen.render) and the Ray actors
(gen.render_ray), so both plan and record a job the same way.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gen.jobs import Job, JobPlan, PipelineCache, execute, plan_job


@dataclass
class BatchJob:
    line: int  # its line in the job file (or position in a Python list)
    id: str  # sanitised and unique within the batch: names its outputs
    plan: JobPlan

    @property
    def job(self) -> Job:
        return self.plan.job


def plan_batch_job(job: Job, job_id: str, line: int, out_dir: Path) -> BatchJob:
    """Plan `job` with its outputs named after its id in `out_dir`. Existence of outputs is decided
    by the renderer (skip what exists), so files are written without replacing anything."""
    if job.seed is None:
        job = job.replace(seed=0)  # a batch is reproducible: a job without a seed uses 0, recorded
    job = job.replace(out=str(out_dir / f"{job_id}{job.extension}"), overwrite=True)
    return BatchJob(line, job_id, plan_job(job))


def run_batch_job(entry: BatchJob, pipelines: PipelineCache) -> dict:
    """Run one planned job; its manifest record, with the error instead if it failed."""
    started = time.perf_counter()
    try:
        execute(entry.plan, pipelines.get(entry.plan))
        return manifest_record(entry, "ok", params_from_outputs(entry), time.perf_counter() - started)
    except Exception as exc:  # noqa: BLE001 - one failing job must not stop the others
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return manifest_record(entry, "error", [], time.perf_counter() - started, error=message)


def manifest_record(entry: BatchJob, status: str, params: list[dict], seconds: float,
                    error: str | None = None) -> dict[str, Any]:
    job = entry.job
    record = {"id": entry.id, "line": entry.line, "kind": job.kind, "status": status,
              "outputs": [p.name for p in entry.plan.outputs], "model": job.model, "seed": job.seed,
              "job": job_as_given(job), "params": params, "seconds": round(seconds, 3),
              "finished": time.strftime("%Y-%m-%dT%H:%M:%S")}
    if error is not None:
        record["error"] = error
    return record


def job_as_given(job: Job) -> dict[str, Any]:
    """The job's dict form without what the renderer sets (output name, overwrite)."""
    data = job.to_dict()
    del data["out"], data["overwrite"]
    return data


def params_from_outputs(entry: BatchJob) -> list[dict]:
    """The parameters stored in a job's outputs (PNG metadata, the video's sidecar)."""
    from gen.metadata import read_png_metadata

    params = []
    for path in entry.plan.outputs:
        if path.suffix == ".png":
            params.append(read_png_metadata(path)[1] or {})
        elif path.suffix == ".json":
            params.append(json.loads(path.read_text(encoding="utf-8")))
    return params

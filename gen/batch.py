"""One job of a batch: its id, where it came from, its plan under the output folder, and the
manifest record of running it. Shared by the local renderer (gen.render) and the Ray actors
(gen.render_ray), so both plan and record a job the same way.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gen.errors import FieldError
from gen.jobs import Job, JobPlan, PipelineCache, execute, plan_job
from gen.jsonio import loads


@dataclass
class BatchJob:
    line: int  # its line in the job file (or position in a Python list)
    id: str  # sanitised and unique within the batch: names its outputs
    plan: JobPlan

    @property
    def job(self) -> Job:
        return self.plan.job


def plan_batch_job(job: Job, job_id: str, line: int, out_dir: Path) -> BatchJob:
    """Plan `job` with its outputs named after its id in `out_dir`. Outputs that exist are no error
    here: the renderer decides which are this job's (and skips them); nothing is ever replaced."""
    if getattr(job, "context_parallel", 1) != 1:
        raise FieldError("context_parallel", "{name}: gen render runs each job in one process per device (many "
                         "videos at once); split one long video over N GPUs with gen video --gpus N")
    if job.seed is None:
        job = job.replace(seed=0)  # a batch is reproducible: a job without a seed uses 0, recorded
    job = job.replace(out=str(out_dir / f"{job_id}{job.extension}"), overwrite=False)
    return BatchJob(line, job_id, plan_job(job, resume=True))


def foreign_outputs(entry: BatchJob, owners: dict[str, str]) -> list[str]:
    """Why existing outputs of `entry` are not its own, one reason each (none: they are, or none exist).

    `owners` maps output names to the ids of the jobs the manifest says wrote them. An output
    the manifest does not know (its line lost to a kill) is this job's when its stored
    parameters say so; anything else in its place — a user's file, another job's — is foreign.
    """
    reasons = []
    for path in entry.plan.outputs:
        if not path.exists():
            continue
        owner = owners.get(path.name)
        if owner is not None:
            if owner != entry.id:
                reasons.append(f"{path.name} already in the output folder was written by job {owner!r}; "
                               "give this job another id or render into another folder")
            continue
        problem = _made_by(entry, path)
        if problem:
            reasons.append(f"{path.name} is already in the output folder and was not made by this job ({problem}); "
                           "move it away or render into another folder")
    return reasons


def _made_by(entry: BatchJob, path: Path) -> str | None:
    """None if the parameters stored with `path` are this job's; else what is wrong."""
    from gen.errors import GenError
    from gen.metadata import read_png_metadata
    from gen.video_io import read_sidecar, sidecar_path

    job, outputs = entry.job, entry.plan.outputs
    try:
        params = read_png_metadata(path)[1] if path.suffix == ".png" else read_sidecar(sidecar_path(path))
    except GenError as exc:
        return str(exc)
    if not params:
        return "it has no gen parameters"
    index = outputs.index(path)
    expected: dict[str, Any] = {"kind": job.kind, "model": job.model}
    if job.kind == "image":
        expected.update(prompt=job.prompt, seed=entry.plan.inputs["seeds"][index])
    elif job.kind == "style":
        expected.update(content_index=index, prompt=f"style transfer: {Path(job.content[index]).name}")
    else:
        expected.update(prompt=job.prompt, seed=job.seed)
    wrong = [key for key, value in expected.items() if params.get(key) != value]
    return f"its {', '.join(wrong)} differ" if wrong else None


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
            params.append(loads(path.read_bytes(), path.name))
    return params

"""Batch rendering: a file of jobs → outputs in one folder, with a manifest, resumable.

Jobs are JSON lines or CSV rows: `kind` (image, style or video), an optional `id`, and the
parameters of the matching command with the same names as its flags (`width`,
`entropy_scaling`, `dense_steps`, …; lists for repeatable flags such as `style`; in CSV,
`a|b`). Relative file paths are relative to the job file's folder. A job without a seed
uses seed 0. Every job is checked first, exactly as the command line checks it; nothing
starts while any line is bad, unless `skip_invalid`.

Outputs are named after the sanitised job id and written atomically; DIR/manifest.jsonl gets
one line per finished job (id, outputs, parameters, seed, model, timings, or the error).
Running the same command again skips jobs whose outputs all exist and does the rest;
only the missing outputs of a half-finished job are written, existing files are never
replaced. Jobs are grouped by model so each pipeline is loaded once.
"""

from __future__ import annotations

import csv
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gen.errors import GenError
from gen.paths import safe_name

KINDS = ("image", "style", "video")
MANIFEST = "manifest.jsonl"
CONTROLLED = ("out", "overwrite")  # set by the renderer, not by jobs
POSITIONAL = {"image": "prompt", "video": "prompt"}
MULTI_VALUE = ("layers",)  # nargs="+" flags: one flag, several values
EXTENSIONS = {"image": ".png", "style": ".png", "video": ".mp4"}


@dataclass
class Job:
    line: int
    id: str
    kind: str
    params: dict[str, Any]
    plan: Any = None  # gen.jobs.JobPlan once checked


@dataclass
class JobError:
    line: int
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}"


# ----------------------------------------------------------------------------- reading


def read_job_file(path: str | Path) -> tuple[list[tuple[int, dict]], list[JobError]]:
    """(line number, raw job) pairs from JSONL or CSV, and the lines that could not be read."""
    path = Path(path)
    if not path.is_file():
        raise GenError(f"job file {str(path)!r} does not exist")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise GenError(f"job file {path.name} is not UTF-8 text") from None
    rows, errors = [], []
    if path.suffix.lower() == ".csv":
        reader = csv.DictReader(text.splitlines())
        for number, row in enumerate(reader, start=2):
            if None in row:
                errors.append(JobError(number, "more fields than the header has"))
                continue
            rows.append((number, {k.strip(): _csv_value(v) for k, v in row.items() if k and v not in (None, "")}))
    elif path.suffix.lower() in (".jsonl", ".json", ".ndjson"):
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            try:
                job = json.loads(line)
            except json.JSONDecodeError as exc:
                errors.append(JobError(number, f"not valid JSON ({exc.msg})"))
                continue
            if not isinstance(job, dict):
                errors.append(JobError(number, "a job must be a JSON object"))
                continue
            rows.append((number, job))
    else:
        raise GenError(f"job file {path.name}: use .jsonl (one JSON object per line) or .csv")
    return rows, errors


def _csv_value(text: str) -> Any:
    """CSV cells are text: `true`/`false` become booleans, `a|b` a list (repeatable flags)."""
    value = text.strip()
    if value.lower() in ("true", "false"):
        return value.lower() == "true"
    return value.split("|") if "|" in value else value


def job_argv(kind: str, params: dict[str, Any]) -> list[str]:
    """The command-line arguments equivalent to a job's parameters."""
    argv = [kind]
    positional = POSITIONAL.get(kind)
    if positional:
        if positional not in params:
            raise GenError(f"missing {positional!r}")
        argv.append(str(params[positional]))
    for key, value in params.items():
        if key in ("kind", "id", positional):
            continue
        if key in CONTROLLED:
            raise GenError(f"{key!r} is set by gen render (outputs go to --out DIR, named after the job id)")
        flag = "--" + key.replace("_", "-")
        if isinstance(value, bool):
            if value:
                argv.append(flag)
        elif isinstance(value, list):
            if key in MULTI_VALUE:
                argv += [flag, *map(str, value)]
            else:
                for item in value:
                    argv += [flag, str(item)]
        elif value is not None:
            argv += [flag, str(value)]
    return argv


def _job_ids(rows: list[tuple[int, dict]]) -> list[str]:
    """Sanitised, unique ids in file order: `../x` → `x`, repeats get -2, -3, …"""
    ids, seen = [], set()
    for number, job in rows:
        base = safe_name(str(job.get("id") or f"job-{number}"), max_length=80)
        candidate, n = base, 1
        while candidate.lower() in seen:
            n += 1
            candidate = f"{base}-{n}"
        seen.add(candidate.lower())
        ids.append(candidate)
    return ids


FILE_PARAMS = ("content", "style", "mask", "lora")


def resolve_file_params(params: dict[str, Any], base: Path) -> dict[str, Any]:
    """Relative image/LoRA paths in a job are relative to the job file's folder (`style.png:0.3` too)."""
    from gen.validation import parse_weighted_path

    def resolve(spec: str) -> str:
        path, weight = parse_weighted_path(str(spec))
        full = path if Path(path).is_absolute() else str(base / path)
        return full if full and str(spec) == path else f"{full}:{weight:g}"

    resolved = dict(params)
    for key in FILE_PARAMS:
        value = params.get(key)
        if isinstance(value, list):
            resolved[key] = [resolve(v) for v in value]
        elif isinstance(value, str):
            resolved[key] = resolve(value)
    return resolved


def plan_one(raw: dict, job_id: str, line: int, base: Path, out_dir: Path) -> Job:
    """Check one job exactly as the command line would and fix its outputs under `out_dir`."""
    from gen.cli import parse_job_arguments
    from gen.jobs import plan_job

    kind = raw.get("kind")
    if kind not in KINDS:
        raise GenError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
    args = parse_job_arguments(job_argv(kind, resolve_file_params(raw, base)))
    args.out = str(out_dir / f"{job_id}{EXTENSIONS[kind]}")
    args.overwrite = True  # existence is decided per output by the renderer, never by replacing files
    if kind != "style" and args.seed is None:
        args.seed = 0  # a batch is reproducible: a job without a seed uses 0, recorded in the manifest
    return Job(line, job_id, kind, raw, plan_job(args))


def plan_jobs(job_file: str | Path, out_dir: str | Path) -> tuple[list[Job], list[JobError]]:
    """Read and check every job; outputs are fixed under `out_dir`."""
    out_dir = Path(out_dir)
    rows, errors = read_job_file(job_file)
    jobs = []
    for (number, raw), job_id in zip(rows, _job_ids(rows)):
        try:
            jobs.append(plan_one(raw, job_id, number, Path(job_file).parent, out_dir))
        except GenError as exc:
            errors.append(JobError(number, str(exc)))
    errors.sort(key=lambda e: e.line)
    return jobs, errors


# ----------------------------------------------------------------------------- the run


class Manifest:
    """Append-only JSON lines, flushed and synced line by line, so a kill loses at most the line in flight."""

    def __init__(self, path: Path):
        self.path = path

    def records(self) -> list[dict]:
        if not self.path.is_file():
            return []
        records = []
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # a line cut by a kill
        return records

    def append(self, record: dict) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(record, sort_keys=True) + "\n")
            handle.flush()
            os.fsync(handle.fileno())


def remove_stale_temporaries(out_dir: Path) -> list[Path]:
    """Temporary files of writes interrupted by a kill (`.NAME.XXXX.tmp.EXT`, ours only)."""
    stale = [p for p in out_dir.rglob(".*.tmp*") if p.is_file()] if out_dir.is_dir() else []
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


@dataclass
class RenderSummary:
    done: int
    skipped: int
    failed: int
    invalid: int


class PipelineCache:
    """One loaded pipeline at a time per process: jobs arrive grouped by model."""

    def __init__(self) -> None:
        self.key, self.pipe = None, None

    def get(self, plan):
        from gen.jobs import load_pipeline_for

        if plan.pipeline_key != self.key:
            self.key, self.pipe = None, None  # free the previous model first
            self.pipe, self.key = load_pipeline_for(plan), plan.pipeline_key
            self.pipe.pipe.set_progress_bar_config(disable=True)  # the jobs bar is the progress here
        return self.pipe


def execute(job: Job, pipelines: PipelineCache) -> dict:
    """Run one planned job; its manifest record, with the error instead if it failed."""
    from gen.jobs import run_job

    started = time.perf_counter()
    try:
        run_job(job.plan, pipelines.get(job.plan))
        return _record(job, "ok", _params_from_outputs(job), time.perf_counter() - started)
    except Exception as exc:  # noqa: BLE001 - one failing job must not stop the others
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return _record(job, "error", [], time.perf_counter() - started, error=message)


def render(job_file: str | Path, out_dir: str | Path, skip_invalid: bool = False, ray_address: str | None = None,
           use_ray: bool = False, workers: int = 1, gpus_per_worker: float = 0.0,
           log: Callable[[str], None] = lambda line: print(line, file=sys.stderr)) -> RenderSummary:
    """Run a job file into `out_dir` in this process, or on Ray Data (see the module docstring)."""
    from tqdm.auto import tqdm

    if workers < 1:
        raise GenError(f"--workers must be >= 1, got {workers}")
    if workers > 1 and not use_ray:
        raise GenError("--workers above 1 needs --ray (a local render runs in this process)")
    out_dir = Path(out_dir)
    jobs, errors = plan_jobs(job_file, out_dir)
    for error in errors:
        log(f"invalid job, {error}")
    if errors and not skip_invalid:
        raise GenError(f"{len(errors)} invalid job(s) (listed above); nothing was started. "
                       "Fix them or pass --skip-invalid")
    out_dir.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(out_dir)
    manifest = Manifest(out_dir / MANIFEST)
    finished = {r["id"] for r in manifest.records() if r.get("status") == "ok"}

    pending, skipped = [], 0
    for job in jobs:
        existing = {p for p in job.plan.outputs if p.exists()}
        if len(existing) == len(job.plan.outputs):
            if job.id not in finished:  # outputs written, manifest line lost to a kill
                manifest.append(_record(job, "ok", _params_from_outputs(job), 0.0))
            skipped += 1
        else:
            job.plan.data["skip"] = existing
            pending.append(job)
    group = {}
    for job in pending:  # jobs of one pipeline together, groups in order of first appearance
        group.setdefault(job.plan.pipeline_key, len(group))
    pending.sort(key=lambda j: (group[j.plan.pipeline_key], j.line))

    if use_ray:
        from gen.render_ray import run_on_ray

        results = run_on_ray(pending, Path(job_file).parent, out_dir, ray_address, workers, gpus_per_worker)
    else:
        pipelines = PipelineCache()
        results = (execute(job, pipelines) for job in pending)
    failed = done = 0
    with tqdm(total=len(pending), desc="jobs", unit="job") as bar:
        for record in results:
            manifest.append(record)
            if record["status"] == "ok":
                done += 1
            else:
                failed += 1
                log(f"job {record['id']} (line {record['line']}) failed: {record['error']}")
            bar.update(1)
    return RenderSummary(done, skipped, failed, len(errors))


def _record(job: Job, status: str, params: list[dict], seconds: float, error: str | None = None) -> dict:
    record = {"id": job.id, "line": job.line, "kind": job.kind, "status": status,
              "outputs": [str(p.name) for p in job.plan.outputs], "model": job.plan.args.model,
              "seed": getattr(job.plan.args, "seed", None), "params": params, "seconds": round(seconds, 3),
              "finished": time.strftime("%Y-%m-%dT%H:%M:%S")}
    if error is not None:
        record["error"] = error
    return record


def _params_from_outputs(job: Job) -> list[dict]:
    from gen.metadata import read_png_metadata

    params = []
    for path in job.plan.outputs:
        if path.suffix == ".png":
            params.append(read_png_metadata(path)[1] or {})
        elif path.suffix == ".json":
            params.append(json.loads(path.read_text()))
    return params

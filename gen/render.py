"""Batch rendering: a file (or list) of jobs → outputs in one folder, with a manifest, resumable.

Jobs are JSON lines or CSV rows: `kind` (image, style or video), an optional `id`, and the
fields of that kind of job (gen.jobs; the same names as the command line's flags: `width`,
`entropy_scaling`, `dense_steps`, …; lists for repeatable ones such as `style`; in CSV,
`a|b`). Relative file paths are relative to the job file's folder. A job without a seed
uses seed 0. Every job is checked first, exactly as the command line checks it; nothing
starts while any line is bad, unless `skip_invalid`. From Python, `render` also takes the
jobs themselves: `render([ImageJob(prompt="a fox"), …], "renders/")`.

Outputs are named after the sanitised job id and written atomically; DIR/manifest.jsonl gets
one line per finished job (id, outputs, the job, parameters, seed, model, timings, or the
error). Running the same command again skips jobs whose outputs all exist and does the rest;
only the missing outputs of a half-finished job are written, existing files are never
replaced. Jobs are grouped by model so each pipeline is loaded once.
"""

from __future__ import annotations

import csv
import math
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gen.batch import BatchJob, foreign_outputs, manifest_record, params_from_outputs, plan_batch_job, run_batch_job
from gen.errors import GenError
from gen.jobs import Job, PipelineCache, job_from_dict
from gen.jsonio import dumps, loads
from gen.outputs import remove_stale_temporaries, render_lock
from gen.paths import safe_name

MANIFEST = "manifest.jsonl"
CONTROLLED = ("out", "overwrite")  # set by the renderer, not by jobs
JobSource = str | Path | Sequence[Job] | Mapping[str, Job]


@dataclass
class JobError:
    line: int
    message: str
    where: str = "line"  # "job" for jobs given as a Python list

    def __str__(self) -> str:
        return f"{self.where} {self.line}: {self.message}"


# ----------------------------------------------------------------------------- reading


def read_job_file(path: str | Path) -> tuple[list[tuple[int, dict]], list[JobError], bool]:
    """(line number, raw job) pairs from JSONL or CSV, the lines that could not be read, and whether
    the values are text to parse (CSV cells)."""
    path = Path(path)
    if not path.is_file():
        raise GenError(f"job file {str(path)!r} does not exist")
    try:
        text = path.read_text(encoding="utf-8-sig")  # a byte order mark (Excel's CSVs) is not data
    except UnicodeDecodeError:
        raise GenError(f"job file {path.name} is not UTF-8 text") from None
    rows, errors = [], []
    if path.suffix.lower() == ".csv":
        reader = csv.DictReader(text.splitlines())
        columns = [name.strip() for name in reader.fieldnames or []]
        repeated = next((name for name in columns if columns.count(name) > 1), None)
        if repeated is not None:
            raise GenError(f"job file {path.name}: column {repeated!r} appears twice in the header")
        for number, row in enumerate(reader, start=2):
            if None in row:
                errors.append(JobError(number, "more fields than the header has"))
                continue
            rows.append((number, {k.strip(): v.strip() for k, v in row.items() if k and v not in (None, "")}))
        return rows, errors, True
    if path.suffix.lower() not in (".jsonl", ".json", ".ndjson"):
        raise GenError(f"job file {path.name}: use .jsonl (one JSON object per line) or .csv")
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        try:
            job = loads(line, "the line")
        except GenError as exc:
            errors.append(JobError(number, str(exc).removeprefix("the line is ")))
            continue
        if not isinstance(job, dict):
            errors.append(JobError(number, "a job must be a JSON object"))
            continue
        rows.append((number, job))
    return rows, errors, False


def _job_ids(raw_ids: list[str]) -> list[str]:
    """Sanitised, unique ids in order: `../x` → `x`, repeats get -2, -3, …"""
    ids, seen = [], set()
    for raw in raw_ids:
        base = safe_name(raw, max_length=80)
        candidate, n = base, 1
        while candidate.lower() in seen:
            n += 1
            candidate = f"{base}-{n}"
        seen.add(candidate.lower())
        ids.append(candidate)
    return ids


def job_from_row(row: dict[str, Any], base: Path, text: bool = False) -> Job:
    """The job of one job-file row; its relative paths are relative to `base` (the file's folder)."""
    fields = {key: value for key, value in row.items() if key != "id"}
    for key in CONTROLLED:
        if key in fields:
            raise GenError(f"{key!r} is set by gen render (outputs go to --out DIR, named after the job id)")
    return job_from_dict(fields, text=text).with_paths_from(base)


def plan_jobs(source: JobSource, out_dir: str | Path) -> tuple[list[BatchJob], list[JobError]]:
    """Read and check every job; outputs are fixed under `out_dir`."""
    out_dir = Path(out_dir)
    if isinstance(source, (str, Path)):
        rows, errors, text = read_job_file(source)
        numbers = [number for number, _ in rows]
        ids = _job_ids([str(row.get("id") or f"job-{number}") for number, row in rows])
        base = Path(source).parent
        make = [lambda row=row: job_from_row(row, base, text) for _, row in rows]
        where = "line"
    else:
        items = list(source.items()) if isinstance(source, Mapping) else [(None, job) for job in source]
        numbers, errors, where = list(range(1, len(items) + 1)), [], "job"
        ids = _job_ids([str(key or f"job-{number}") for number, (key, _) in zip(numbers, items)])
        make = [lambda job=job: _given_job(job) for _, job in items]
    entries, writers = [], {}
    for number, job_id, build in zip(numbers, ids, make):
        try:
            entry = plan_batch_job(build(), job_id, number, out_dir)
        except GenError as exc:
            errors.append(JobError(number, str(exc), where))
            continue
        clash = next((name for name in _written_names(entry) if name.lower() in writers), None)
        if clash is not None:  # two jobs' outputs may not share a name: one would replace the other
            first = writers[clash.lower()]
            errors.append(JobError(number, f"output {clash} is also written by {where} {first.line} (job {first.id!r}); "
                                           "give one of them another id", where))
            continue
        writers.update({name.lower(): entry for name in _written_names(entry)})
        entries.append(entry)
    errors.sort(key=lambda e: e.line)
    return entries, errors


def _written_names(entry: BatchJob) -> list[str]:
    """The names a job writes into the output folder: its outputs, and a video's frame folder."""
    names = [path.name for path in entry.plan.outputs]
    if getattr(entry.job, "png_frames", False):
        names.append(entry.plan.inputs["frames_dir"].name)
    return names


def _given_job(job: Any) -> Job:
    if not isinstance(job, Job):
        raise GenError(f"not a job: {type(job).__name__} (use ImageJob, StyleJob or VideoJob)")
    if job.out is not None or job.overwrite:
        raise GenError("'out' and 'overwrite' are set by render (outputs go to out_dir, named after the job id)")
    return job


# ----------------------------------------------------------------------------- the run


class Manifest:
    """Append-only JSON lines, flushed and synced line by line, so a kill loses at most the line in flight.

    Reading skips what is not a record (a line cut by a kill, bytes that are not UTF-8, JSON that is
    not an object); before appending, a torn last line is ended, so the next record is not glued to it.
    """

    def __init__(self, path: Path):
        self.path = path

    def check(self) -> None:
        if self.path.is_dir():
            raise GenError(f"{str(self.path)!r} is a folder; gen render keeps its manifest there: move it away")

    def records(self) -> list[dict]:
        if not self.path.is_file():
            return []
        records = []
        for raw in self.path.read_bytes().splitlines():
            try:
                record = loads(raw.decode("utf-8"), "manifest line")
            except (GenError, UnicodeDecodeError):
                continue
            if isinstance(record, dict):
                records.append(record)
        return records

    def end_torn_line(self) -> None:
        """A crash mid-write leaves a last line without its newline: end it (it stays unreadable, skipped)."""
        if not self.path.is_file() or self.path.stat().st_size == 0:
            return
        with open(self.path, "rb+") as handle:
            handle.seek(-1, os.SEEK_END)
            if handle.read(1) != b"\n":
                handle.write(b"\n")
                handle.flush()
                os.fsync(handle.fileno())

    def owners(self) -> dict[str, str]:
        """Output name → id of the job the manifest says wrote it (the latest record wins)."""
        return {name: record["id"] for record in self.records() if record.get("status") == "ok"
                and isinstance(record.get("id"), str) for name in record.get("outputs") or [] if isinstance(name, str)}

    def append(self, record: dict) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(dumps(record, sort_keys=True) + "\n")
            handle.flush()
            os.fsync(handle.fileno())


@dataclass
class RenderSummary:
    done: int
    skipped: int
    failed: int
    invalid: int


def render(source: JobSource, out_dir: str | Path, skip_invalid: bool = False, ray_address: str | None = None,
           use_ray: bool = False, workers: int = 1, gpus_per_worker: float = 0.0, wait: bool = False,
           log: Callable[[str], None] = lambda line: print(line, file=sys.stderr)) -> RenderSummary:
    """Run a job file (or a list of jobs, or {id: job}) into `out_dir`, in this process or on Ray Data
    (see the module docstring). One render per folder at a time: another one refuses, or waits with `wait`."""
    if workers < 1:
        raise GenError(f"--workers must be >= 1, got {workers}")
    if workers > 1 and not use_ray:
        raise GenError("--workers above 1 needs --ray (a local render runs in this process)")
    if not (math.isfinite(gpus_per_worker) and gpus_per_worker >= 0):
        raise GenError(f"--gpus-per-worker must be a number >= 0, got {gpus_per_worker}")
    out_dir = Path(out_dir)
    manifest = Manifest(out_dir / MANIFEST)
    manifest.check()
    entries, errors = plan_jobs(source, out_dir)
    _refuse_invalid(errors, skip_invalid, log)
    command = f"gen render {source}" if isinstance(source, (str, Path)) else "gen.render.render()"
    with render_lock(out_dir, command, wait=wait, on_wait=log):
        # Under the lock nothing else writes here: what is in the folder now is what the jobs find.
        remove_stale_temporaries([path for entry in entries for path in entry.plan.files], exclusive=True)
        manifest.end_torn_line()
        owners = manifest.owners()
        foreign = [JobError(e.line, reason, "line" if isinstance(source, (str, Path)) else "job")
                   for e in entries for reason in foreign_outputs(e, owners)]
        _refuse_invalid(foreign, skip_invalid, log)
        refused = {error.line for error in foreign}
        entries = [entry for entry in entries if entry.line not in refused]
        pending, skipped = _pending(entries, manifest, owners)
        done, failed = _run(pending, manifest, out_dir, use_ray, ray_address, workers, gpus_per_worker, log)
    return RenderSummary(done, skipped, failed, len(errors) + len(foreign))


def _refuse_invalid(errors: list[JobError], skip_invalid: bool, log: Callable[[str], None]) -> None:
    for error in errors:
        log(f"invalid job, {error}")
    if errors and not skip_invalid:
        raise GenError(f"{len(errors)} invalid job(s) (listed above); nothing was started. "
                       "Fix them or pass --skip-invalid")


def _pending(entries: list[BatchJob], manifest: Manifest, owners: dict[str, str]) -> tuple[list[BatchJob], int]:
    """The jobs with outputs still to write, grouped by pipeline; and how many are complete already."""
    pending, skipped = [], 0
    for entry in entries:
        existing = {p for p in entry.plan.outputs if p.exists()}
        if len(existing) == len(entry.plan.outputs):
            if not all(owners.get(p.name) == entry.id for p in existing):  # outputs there, manifest line lost
                manifest.append(manifest_record(entry, "ok", params_from_outputs(entry), 0.0))
            skipped += 1
        else:
            entry.plan.skip = existing
            pending.append(entry)
    group: dict[tuple, int] = {}
    for entry in pending:  # jobs of one pipeline together, groups in order of first appearance
        group.setdefault(entry.plan.pipeline_key, len(group))
    pending.sort(key=lambda e: (group[e.plan.pipeline_key], e.line))
    return pending, skipped


def _run(pending: list[BatchJob], manifest: Manifest, out_dir: Path, use_ray: bool, ray_address: str | None,
         workers: int, gpus_per_worker: float, log: Callable[[str], None]) -> tuple[int, int]:
    """Run the jobs here or on Ray, writing a manifest line as each finishes; (done, failed)."""
    from tqdm.auto import tqdm

    if use_ray:
        from gen.render_ray import run_on_ray

        results = run_on_ray(pending, out_dir, ray_address, workers, gpus_per_worker)
    else:
        pipelines = PipelineCache(quiet=True)  # the jobs bar is the progress here
        results = (run_batch_job(entry, pipelines) for entry in pending)
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
    return done, failed

"""One video on several processes (context parallelism): the ranks, how they start and how a run ends.

Processes are torch's: `gen video --gpus N` starts N ranks through torch's elastic launcher (what
`torchrun` runs: one process per GPU, a rendezvous on a free local port, no restarts) and waits
for them; under `torchrun --nproc-per-node N -m gen video … --context-parallel N` the ranks are
torchrun's. Either way each rank initialises `torch.distributed` from the launcher's environment
(NCCL for CUDA tensors with gloo beside it for CPU ones; gloo alone on a CPU-only machine), on
its own GPU (`LOCAL_RANK`).

How a run ends when something fails:
- the launcher watches the ranks: when one exits with an error, it stops the others (SIGTERM, then
  SIGKILL after `SHUTDOWN_TIMEOUT_S` for gen's launcher; torchrun's own default is 30 s);
- a rank blocked in a collective whose peer died gets an error from gloo at once; a rank that
  hangs without dying is ended by the process-group timeout (`GEN_CP_TIMEOUT_S`, default 600 s);
- only the first failure of a run is told: the failing rank records its one-line message in the
  launcher's key-value store (`first_failure`), and ranks that fail because of it stay quiet.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import tempfile
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from gen.errors import FieldError, GenError

JOB_ENVIRONMENT = "GEN_JOB"  # the job of a `--gpus` run, as its dict form (JSON), for the ranks gen starts
SHUTDOWN_TIMEOUT_S = 5  # gen's launcher: seconds the other ranks get to clean up once one has failed
_FIRST_FAILURE_KEY = "gen/first_failure"


def process_group_timeout() -> timedelta:
    """How long a collective waits for the other ranks before failing (GEN_CP_TIMEOUT_S, default 600 s)."""
    text = os.environ.get("GEN_CP_TIMEOUT_S", "600")
    try:
        seconds = float(text)
    except ValueError:
        seconds = float("nan")
    if not 1 <= seconds <= 86400:
        raise GenError(f"GEN_CP_TIMEOUT_S must be between 1 and 86400 seconds, got {text!r}")
    return timedelta(seconds=seconds)


@dataclass(frozen=True)
class Ranks:
    """This process's place in the run."""

    rank: int
    world_size: int
    local_rank: int

    @property
    def is_main_process(self) -> bool:
        """Rank 0: the one that prints progress and writes files."""
        return self.rank == 0


def launched_by_torchrun() -> bool:
    """Whether this process is one rank of a launched run (torchrun, gen's launcher, any env:// launcher)."""
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def init_ranks() -> Ranks:
    """`torch.distributed` for this process, from the launcher's environment (once; later calls just report).

    On a machine with CUDA each rank takes its own GPU (`LOCAL_RANK`); collectives of CUDA tensors go through
    NCCL and those of CPU tensors through gloo. Without CUDA, gloo does all (CPU runs, tests)."""
    import torch
    import torch.distributed as dist

    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    if not dist.is_initialized():
        if not launched_by_torchrun():
            raise GenError("context parallelism runs one process per rank: start them with gen video --gpus N, or "
                           "torchrun --nproc-per-node N -m gen video … --context-parallel N")
        backend = "gloo"
        if torch.cuda.is_available():
            torch.cuda.set_device(local_rank)
            backend = "cpu:gloo,cuda:nccl"
        dist.init_process_group(backend, timeout=process_group_timeout())
    return Ranks(dist.get_rank(), dist.get_world_size(), local_rank)


def close_ranks() -> None:
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()


def rank_device(device: str | None) -> str | None:
    """The device of this rank: its own GPU (`cuda:LOCAL_RANK`) for `None` or "cuda" on a CUDA machine."""
    import torch

    if device in (None, "cuda") and torch.cuda.is_available():
        return f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}"
    return device


def same_seed_everywhere(seed: int) -> int:
    """Rank 0's seed on every rank (a seed drawn at random differs per process; the latents may not)."""
    import torch
    import torch.distributed as dist

    value = torch.tensor([seed], dtype=torch.int64)  # a CPU tensor: gloo's, also beside NCCL
    dist.broadcast(value, src=0)
    return int(value.item())


def first_failure(message: str) -> bool:
    """Whether this rank's failure is the run's first, recording `message` if so. When one rank fails, the others
    fail too (their collectives break, or the launcher stops them): the first is the one to tell. If the store
    cannot be reached, every failure counts as first (better twice than never)."""
    import torch.distributed as dist

    try:
        store = dist.distributed_c10d._get_default_store()
        store.set_timeout(timedelta(seconds=5))
        return store.compare_set(_FIRST_FAILURE_KEY, "", message) == message.encode()
    except Exception:  # noqa: BLE001 - no process group or no store: tell it
        return True


# ----------------------------------------------------------------------------- gen's launcher


def check_launch(degree: int, device: str | None) -> None:
    """`--gpus N` on this machine: N GPUs, or (without CUDA) N ranks sharing the CPU, as tests do. (Which devices
    a split job may name is the job's own check.)"""
    import torch

    if device == "cuda" and not torch.cuda.is_available():
        raise FieldError("device", "{name} cuda: no CUDA device here")
    if device != "cpu" and torch.cuda.is_available() and torch.cuda.device_count() < degree:
        raise FieldError("context_parallel", f"{{name}} {degree} needs {degree} GPUs; this machine has "
                         f"{torch.cuda.device_count()}")


def launch(job: dict[str, Any], degree: int, threads: int | None = None) -> int:
    """Run a planned video job (its dict form) on `degree` local ranks through torch's elastic launcher; the
    exit status of the run (the first failed rank's; 0 when all succeed).

    Each rank runs `python -m gen.rank`, which reads the job from `GEN_JOB`. On a CPU-only machine each rank
    gets `threads` (default: the cores shared out) unless OMP_NUM_THREADS is set. The launcher's logs go to a
    temporary folder that is removed afterwards; a rank that dies without a word (killed) is told here."""
    from torch.distributed.elastic.multiprocessing import DefaultLogsSpecs, SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    environment = {JOB_ENVIRONMENT: json.dumps(job, allow_nan=False)}
    if "OMP_NUM_THREADS" not in os.environ:
        environment["OMP_NUM_THREADS"] = str(threads or max(1, (os.cpu_count() or 1) // degree))
    with tempfile.TemporaryDirectory(prefix="gen-ranks-") as logs, _environment(environment), _quiet_launcher():
        config = LaunchConfig(min_nodes=1, max_nodes=1, nproc_per_node=degree, run_id=uuid.uuid4().hex,
                              rdzv_backend="c10d", rdzv_endpoint="localhost:0", max_restarts=0,
                              monitor_interval=0.1, logs_specs=DefaultLogsSpecs(log_dir=logs),
                              shutdown_timeout=SHUTDOWN_TIMEOUT_S)
        try:
            elastic_launch(config, sys.executable)("-m", "gen.rank")
        except ChildFailedError as exc:
            return _exit_status(exc)
        except SignalException as exc:  # the launcher was interrupted; it has stopped the ranks
            return 128 + int(exc.sigval)
    return 0


def _exit_status(failed) -> int:
    """The status of a failed run: the first rank that exited with an error said why itself; a rank that was
    killed (the kernel's out-of-memory killer, a signal) could not, so it is told here."""
    errors = {rank: failure for rank, failure in failed.failures.items() if failure.exitcode > 0}
    if errors:
        return errors[min(errors, key=lambda rank: errors[rank].timestamp)].exitcode
    rank, failure = failed.get_first_failure()
    name = failure.signal_name()
    hint = " - out of memory?" if name == "SIGKILL" else ""
    print(f"gen video: error: rank {rank} was killed ({name}){hint}", file=sys.stderr)
    return 1


@contextlib.contextmanager
def _environment(values: dict[str, str]):
    """Environment variables for the ranks to inherit; the old values are put back after."""
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@contextlib.contextmanager
def _quiet_launcher():
    """The elastic launcher logs each start and stop; gen's ranks say what matters (one line on failure)."""
    logger = logging.getLogger("torch.distributed.elastic")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


def job_from_environment() -> dict[str, Any]:
    """The job a `--gpus` launch handed to this rank."""
    from gen.jsonio import loads

    text = os.environ.get(JOB_ENVIRONMENT)
    if text is None:
        raise GenError(f"python -m gen.rank runs one rank of gen video --gpus N; {JOB_ENVIRONMENT} is not set")
    job = loads(text.encode(), JOB_ENVIRONMENT)
    if not isinstance(job, dict):
        raise GenError(f"{JOB_ENVIRONMENT} is not a job")
    return job

"""One video split over 2 processes (Ulysses context parallelism) on CPU over gloo: the same latents as one
process, one MP4 written by rank 0, refusals before anything starts, and a failing rank that ends the run.

The processes are few and small: one torchrun launch runs every model scenario (context_parallel_worker.py),
three more run the command line; each is bounded by a timeout.
"""

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from context_parallel_worker import SCENARIOS, run_scenarios
from gen.cli import main
from gen.errors import FieldError, GenError
from gen.jobs import VideoJob, job_from_record
from gen.video_io import read_mp4_info, read_mp4_metadata

ROOT = Path(__file__).resolve().parents[1]
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
VIDEO = ["--model", "tiny-wan", "--frames", "17", "--width", "64", "--height", "64", "--steps", "2", "--seed", "3"]


def _environment(**extra: str) -> dict:
    """The test's environment (offline, its own cache) for processes it starts: one thread per rank on 2 cores."""
    path = os.pathsep.join(p for p in (extra.pop("PYTHONPATH", None), str(ROOT), os.environ.get("PYTHONPATH")) if p)
    return dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=path, **extra)


def _run(command: list[str], timeout: float, **extra: str) -> tuple[subprocess.CompletedProcess, float]:
    start = time.monotonic()
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=_environment(**extra))
    return done, time.monotonic() - start


def _gen_lines(stderr: str) -> list[str]:
    """gen's messages (rank 0's progress bar may share their line)."""
    return re.findall(r"gen video: [^\r\n]*", stderr)


@pytest.fixture(scope="module")
def one_and_two_processes(tmp_path_factory):
    """Every scenario in this process, then the same split over 2 torchrun ranks (rank 0's latents)."""
    single, single_layouts = run_scenarios()
    out = tmp_path_factory.mktemp("split") / "split"
    done, _ = _run([*TORCHRUN, str(ROOT / "tests" / "context_parallel_worker.py"), str(out)], timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    split = dict(np.load(f"{out}.npz"))
    return single, single_layouts, split, json.loads(Path(f"{out}.json").read_text())


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_a_split_video_has_the_latents_of_one_process(one_and_two_processes, scenario):
    single, _, split, _ = one_and_two_processes
    difference = float(np.abs(split[scenario] - single[scenario]).max())
    print(f"{scenario}: latents max difference {difference:.3g}")
    assert split[scenario].shape == single[scenario].shape
    assert difference <= 1e-5


def test_the_radial_mask_matters_in_these_scenarios(one_and_two_processes):
    """Not a vacuous equality: at this layout radial attention drops keys, so it changes the latents."""
    single, *_ = one_and_two_processes
    for family in ("wan", "hunyuan", "hunyuan-padded-text"):
        assert np.abs(single[f"{family}-radial"] - single[f"{family}-dense"]).max() > 1e-4


def test_the_ranks_see_the_global_layout(one_and_two_processes):
    """The layout comes from the unsharded latents: 5 latent frames x 16 tokens, HunyuanVideo's 256 text tokens
    joined after them, on every rank as in one process."""
    _, single_layouts, _, split_layouts = one_and_two_processes
    assert split_layouts == {name: [list(layout) for layout in layouts] for name, layouts in single_layouts.items()}
    assert split_layouts["wan-radial"] == [[5, 16, 0]] and split_layouts["hunyuan-radial"] == [[5, 16, 256]]
    assert split_layouts["hunyuan-padded-text-radial"] == [[5, 16, 12]]
    assert split_layouts["wan-dense"] == []


def test_gpus_runs_the_ranks_and_rank_0_writes_one_video_recording_the_degree(tmp_path, capsys):
    """Also from an empty model cache: the ranks build the tiny model once (transformers saves weights on rank 0
    only under torch.distributed, so a copy built by another rank would lack them)."""
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    out = out_dir / "v.mp4"
    done, _ = _run([sys.executable, "-m", "gen", "video", "a boat", *VIDEO, "--gpus", "2", "--png-frames",
                    "--out", str(out)], timeout=180, GEN_CACHE_DIR=str(tmp_path / "empty-cache"))
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.splitlines() == [f"{out}  17 frames 64x64  seed 3  (4 radial / 8 dense self-attention calls)"]
    assert sorted(p.name for p in out_dir.iterdir()) == ["v.json", "v.mp4", "v_frames"]
    assert len(list((out_dir / "v_frames").iterdir())) == 17
    assert read_mp4_info(out)["frames"] == 17
    sidecar = json.loads((out_dir / "v.json").read_text())
    assert sidecar["context_parallel"] == 2 and read_mp4_metadata(out) == sidecar
    assert job_from_record(sidecar).context_parallel == 1  # the same video, on one GPU
    (out_dir / "v.json").rename(tmp_path / "away.json")
    capsys.readouterr()
    assert main(["info", str(out)]) == 0 and json.loads(capsys.readouterr().out) == sidecar  # from the MP4 itself


def test_the_same_command_runs_under_torchrun(tmp_path):
    out = tmp_path / "t.mp4"
    done, _ = _run([*TORCHRUN, "-m", "gen", "video", "a boat", *VIDEO, "--context-parallel", "2", "--out", str(out)],
                   timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    assert len(done.stdout.splitlines()) == 1 and sorted(p.name for p in tmp_path.iterdir()) == ["t.json", "t.mp4"]
    assert json.loads((tmp_path / "t.json").read_text())["context_parallel"] == 2


def test_bad_input_on_every_rank_is_told_once(tmp_path):
    done, _ = _run([*TORCHRUN, "-m", "gen", "video", "a boat", *VIDEO, "--context-parallel", "2", "--image",
                    str(tmp_path / "missing.png"), "--out", str(tmp_path / "x.mp4")], timeout=120)
    lines = _gen_lines(done.stderr)
    assert done.returncode != 0 and len(lines) == 1, done.stderr[-3000:]
    assert "tiny-wan takes no --image" in lines[0] and list(tmp_path.iterdir()) == []


FAIL_ON_RANK_1 = '''
import os
if os.environ.get("RANK") == "1" and os.environ.get("GEN_JOB"):
    import diffusers

    forward, calls = diffusers.WanTransformer3DModel.forward, []

    def failing(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 3:  # the first transformer call of the second step
            if os.environ.get("HANG_ON_RANK_1"):
                import time

                time.sleep(3600)  # stuck, not dead: only the process-group timeout can tell
            raise RuntimeError("injected failure on rank 1")
        return forward(self, *args, **kwargs)

    diffusers.WanTransformer3DModel.forward = failing
'''


def _processes_mentioning(text: str) -> list[int]:
    """Processes whose environment holds `text` (gen's ranks carry their job, with its output path, in GEN_JOB)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and text.encode() in (entry / "environ").read_bytes():
                found.append(int(entry.name))
        except OSError:
            continue
    return found


@pytest.mark.parametrize("how,message", [
    ("raises", "gen video: error: rank 1: RuntimeError: injected failure on rank 1"),
    ("hangs", "gen video: error: rank 0: RuntimeError: "),  # gloo's "Timed out waiting 5000ms …"
], ids=["raises", "hangs"])
def test_a_failure_on_one_rank_ends_the_whole_run_and_leaves_nothing(tmp_path, how, message):
    inject = tmp_path / "inject"
    inject.mkdir()
    (inject / "sitecustomize.py").write_text(FAIL_ON_RANK_1)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    hang = dict(HANG_ON_RANK_1="1", GEN_CP_TIMEOUT_S="5") if how == "hangs" else {}
    done, seconds = _run([sys.executable, "-m", "gen", "video", "a boat", *VIDEO, "--gpus", "2",
                          "--out", str(out_dir / "v.mp4")], timeout=120, PYTHONPATH=str(inject), **hang)
    print(f"rank 1 {how}: the run ended after {seconds:.1f} s (start-up included)")
    lines = _gen_lines(done.stderr)
    assert done.returncode == 1 and len(lines) == 1 and lines[0].startswith(message), done.stderr[-3000:]
    assert how == "raises" or "Timed out" in lines[0]
    assert list(out_dir.iterdir()) == []  # no output, no temporary file
    assert _processes_mentioning(str(out_dir)) == []


@pytest.mark.parametrize("extra,message", [
    (["--gpus", "3"], "--context-parallel 3 does not divide the 2 attention heads of tiny-wan; degrees that do: 2"),
    (["--gpus", "2", "--width", "48", "--height", "48"],
     "--context-parallel 2 does not divide the 45 video tokens of 17 frames at 48x48"),
    (["--gpus", "2", "--device", "cuda:1"], "--device 'cuda:1': split over several ranks, each takes its own GPU"),
    (["--gpus", "0"], "--context-parallel must be between 1 and 64, got 0"),
    (["--gpus", "2", "--model", "tiny-hunyuan-i2v", "--image", "x.png"], "tiny-hunyuan-i2v cannot run on several GPUs"),
])
def test_a_split_that_cannot_work_exits_2_before_anything_starts(tmp_path, capsys, monkeypatch, extra, message):
    monkeypatch.chdir(tmp_path)
    args = ["video", "x", *VIDEO, "--out", "v.mp4", *extra]
    if "--model" in extra:
        args = ["video", "x", "--frames", "17", "--out", "v.mp4", *extra]
    code = main(args)
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert list(tmp_path.iterdir()) == []


def test_render_and_the_python_api_refuse_what_cannot_be_split(tmp_path):
    from gen.render import render
    from pipelines import TextToVideoPipeline

    with pytest.raises(GenError, match="1 invalid job"):
        render([VideoJob(prompt="x", context_parallel=2)], tmp_path / "out", log=lambda _: None)
    with pytest.raises(GenError, match="needs torch.distributed initialised"):
        TextToVideoPipeline.from_pretrained("tiny-wan", context_parallel=2)  # refused before loading
    from diffusers import ContextParallelConfig

    with pytest.raises(GenError, match="ring attention"):
        _with_one_process_group(tmp_path, lambda: TextToVideoPipeline.from_pretrained(
            "tiny-wan", context_parallel=ContextParallelConfig(ring_degree=2)))
    with pytest.raises(FieldError, match="cannot run on several GPUs"):
        VideoJob(prompt="x", model="hunyuan-video-i2v", image="x.png", context_parallel=8).check()
    VideoJob(prompt="x", model="wan2.1-14b", context_parallel=8).check()  # 40 heads, 75,600 tokens: fine
    from gen.tiny_models import tiny_preset_path
    from gen.video_models import VIDEO_PRESETS, video_preset

    for name in ("tiny-wan", "tiny-hunyuan"):  # the heads a preset states are its transformer's (read from a folder)
        assert video_preset(str(tiny_preset_path(name))).heads == VIDEO_PRESETS[name].heads == 2
    with pytest.raises(FieldError, match="degrees that do: 2, 4, 5, 8, 10, 20, 40"):
        VideoJob(prompt="x", model="wan2.1-14b", context_parallel=3).check()


def _with_one_process_group(folder, action):
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{folder / 'store'}", rank=0, world_size=1)
    try:
        return action()
    finally:
        dist.destroy_process_group()

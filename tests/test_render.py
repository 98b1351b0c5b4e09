"""`gen render`: job files, validation, hostile ids, manifest, resume after kill -9, failures."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from gen.cli import main
from gen.errors import GenError
from gen.render import plan_jobs, render
from gen.video_io import read_mp4_info

ROOT = Path(__file__).resolve().parent.parent


def write_jobs(folder: Path, jobs: list, name="jobs.jsonl") -> Path:
    for asset in ("coffee.jpg", "brick.jpg", "gravel.jpg"):
        shutil.copy(ROOT / "assets" / asset, folder / asset)
    path = folder / name
    path.write_text("\n".join(j if isinstance(j, str) else json.dumps(j) for j in jobs) + "\n")
    return path


def manifest(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]


MIXED = [
    {"kind": "image", "id": "fox", "prompt": "a red fox", "width": 128, "height": 64, "steps": 2, "seed": 7, "batch": 2},
    {"kind": "style", "id": "coffee", "content": "coffee.jpg", "style": ["brick.jpg", "gravel.jpg:0.3"], "steps": 3,
     "size": 64},
    {"kind": "video", "id": "waves", "prompt": "waves", "frames": 5, "width": 64, "height": 48, "steps": 2, "seed": 3},
]


def test_mixed_jobs_render_with_manifest_and_a_second_run_does_nothing(tmp_path):
    out = tmp_path / "out"
    summary = render(write_jobs(tmp_path, MIXED), out)
    assert (summary.done, summary.failed) == (3, 0)
    assert sorted(p.name for p in out.iterdir()) == ["coffee.png", "fox-7.png", "fox-8.png", "manifest.jsonl",
                                                      "waves.json", "waves.mp4"]
    records = manifest(out)
    assert [(r["id"], r["status"]) for r in records] == [("fox", "ok"), ("coffee", "ok"), ("waves", "ok")]
    assert records[0]["params"][1]["seed"] == 8 and records[2]["params"][0]["frames"] == 5
    assert read_mp4_info(out / "waves.mp4")["frames"] == 5
    again = render(write_jobs(tmp_path, MIXED), out)
    assert (again.done, again.skipped) == (0, 3) and len(manifest(out)) == 3


def test_batch_images_equal_single_command_runs(tmp_path, capsys):
    out = tmp_path / "out"
    render(write_jobs(tmp_path, MIXED[:1]), out)
    assert main(["image", "a red fox", "--width", "128", "--height", "64", "--steps", "2", "--seed", "8",
                 "--out", str(tmp_path / "single.png")]) == 0
    assert np.array_equal(np.asarray(Image.open(out / "fox-8.png")), np.asarray(Image.open(tmp_path / "single.png")))


def test_csv_jobs(tmp_path):
    for asset in ("coffee.jpg", "brick.jpg", "gravel.jpg"):
        shutil.copy(ROOT / "assets" / asset, tmp_path / asset)
    (tmp_path / "jobs.csv").write_text(
        "kind,id,prompt,content,style,steps,size,width,height,preserve_color\n"
        "image,cat,a cat,,,2,,64,64,\n"
        "style,two,,coffee.jpg,brick.jpg|gravel.jpg:0.5,2,64,,,true\n")
    summary = render(tmp_path / "jobs.csv", tmp_path / "out")
    assert summary.done == 2
    assert manifest(tmp_path / "out")[1]["params"][0]["preserve_color"] is True


BAD_LINES = [
    '{"kind": "image", "prompt": "ok", "steps": 1}',
    "{not json",
    '{"kind": "image", "steps": 2}',
    '{"kind": "painting", "prompt": "x"}',
    '{"kind": "image", "prompt": "x", "width": 100}',
    '{"kind": "image", "prompt": "x", "colour": "red"}',
    '{"kind": "image", "prompt": "x", "out": "/tmp/elsewhere.png"}',
    '{"kind": "style", "content": "missing.jpg", "style": "brick.jpg"}',
    '["a", "list"]',
]


def test_every_bad_line_is_reported_with_its_number_and_nothing_starts(tmp_path):
    jobs = write_jobs(tmp_path, BAD_LINES)
    _, errors = plan_jobs(jobs, tmp_path / "out")
    messages = {e.line: e.message for e in errors}
    assert sorted(messages) == [2, 3, 4, 5, 6, 7, 8, 9]
    assert "not valid JSON" in messages[2] and "missing prompt" in messages[3]
    assert "kind must be one of image, style, video" in messages[4]
    assert "width 100 is not a multiple of 8" in messages[5] and "unknown field 'colour' for an image job" in messages[6]
    assert "'out' is set by gen render" in messages[7] and "does not exist" in messages[8]
    with pytest.raises(GenError, match="8 invalid job"):
        render(jobs, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    summary = render(jobs, tmp_path / "out", skip_invalid=True)
    assert (summary.done, summary.invalid) == (1, 8)


def test_hostile_ids_stay_inside_the_output_folder(tmp_path):
    ids = ["../escape", "/etc/passwd", "a" * 300, "dup", "DUP", "dup", "", "..", "con:name?*"]
    jobs = [{"kind": "image", "id": i, "prompt": "x", "steps": 1} for i in ids]
    planned, errors = plan_jobs(write_jobs(tmp_path, jobs), tmp_path / "out")
    assert not errors
    names = [j.id for j in planned]
    assert names[:3] == ["escape", "etc_passwd", "a" * 80] and names[3:6] == ["dup", "DUP-2", "dup-3"]
    assert len(set(n.lower() for n in names)) == len(names)
    for job in planned:
        assert job.plan.outputs[0].parent == tmp_path / "out" and not job.plan.outputs[0].name.startswith(".")


def test_failing_job_is_recorded_and_the_others_continue(tmp_path, capsys):
    save_file({"unrelated.weight": torch.zeros(2, 2)}, str(tmp_path / "junk.safetensors"))
    jobs = write_jobs(tmp_path, [
        {"kind": "video", "id": "broken", "prompt": "x", "frames": 5, "width": 64, "height": 64, "steps": 1,
         "lora": "junk.safetensors"},
        {"kind": "image", "id": "fine", "prompt": "x", "steps": 1},
    ])
    code = main(["render", str(jobs), "--out", str(tmp_path / "out")])
    assert code == 1
    records = {r["id"]: r for r in manifest(tmp_path / "out")}
    assert records["broken"]["status"] == "error" and "junk.safetensors" in records["broken"]["error"]
    assert records["fine"]["status"] == "ok" and (tmp_path / "out" / "fine.png").exists()
    assert "1 done, 0 already complete, 1 failed" in capsys.readouterr().out


def test_kill_9_then_resume_gives_exactly_the_complete_set(tmp_path):
    jobs = write_jobs(tmp_path, [{"kind": "image", "id": f"img{i}", "prompt": f"picture {i}", "steps": 6,
                                  "width": 128, "height": 128, "seed": i} for i in range(8)])
    out = tmp_path / "out"
    command = [sys.executable, "-m", "gen", "render", str(jobs), "--out", str(out)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while time.time() < deadline:
        if (out / "manifest.jsonl").exists() and len(manifest(out)) >= 2:
            break
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    first = len(manifest(out))
    assert 2 <= first < 8, "the kill should land in the middle of the run"

    assert subprocess.run(command, capture_output=True, timeout=300).returncode == 0
    records = manifest(out)
    assert sorted(r["id"] for r in records) == [f"img{i}" for i in range(8)]  # each job exactly once
    assert all(r["status"] == "ok" for r in records)
    files = sorted(p.name for p in out.iterdir())
    assert files == sorted([f"img{i}.png" for i in range(8)] + ["manifest.jsonl"])  # no temporaries left
    for i in range(8):
        Image.open(out / f"img{i}.png").verify()  # every image complete


def test_prompts_that_look_like_flags_are_text_and_every_job_renders(tmp_path):
    """A job's values are data, never command-line arguments: `--help` renders an image of "--help"."""
    prompts = ["--help", "-h", "--out /etc/x", "-blurry"]
    jobs = [{"kind": "image", "id": f"p{i}", "prompt": p, "negative": "-blurry", "steps": 1, "seed": i}
            for i, p in enumerate(prompts)]
    jobs.append({"kind": "video", "id": "v", "prompt": "--help", "negative": "--version", "frames": 5, "width": 32,
                 "height": 32, "steps": 1})
    out = tmp_path / "out"
    summary = render(write_jobs(tmp_path, jobs), out)
    assert (summary.done, summary.failed) == (5, 0)
    records = {r["id"]: r for r in manifest(out)}
    for i, prompt in enumerate(prompts):
        params = records[f"p{i}"]["params"][0]
        assert (params["prompt"], params["negative_prompt"]) == (prompt, "-blurry")
    assert records["v"]["params"][0]["negative_prompt"] == "--version"
    assert not Path("/etc/x").exists()

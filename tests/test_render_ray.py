"""`gen render --ray`: the same jobs on a local Ray Data actor pool give the same files as one process."""

import json
import shutil
from pathlib import Path

import imageio_ffmpeg
import numpy as np
from PIL import Image

from gen.cli import main

ROOT = Path(__file__).resolve().parent.parent
JOBS = [
    {"kind": "image", "id": "fox", "prompt": "a red fox", "width": 128, "height": 64, "steps": 3, "seed": 7,
     "batch": 2},
    {"kind": "style", "id": "coffee", "content": "coffee.jpg", "style": "brick.jpg", "steps": 3, "size": 64},
    {"kind": "video", "id": "waves", "prompt": "waves", "frames": 5, "width": 64, "height": 48, "steps": 2,
     "seed": 3},
    {"kind": "image", "id": "cat", "prompt": "a cat", "steps": 3, "seed": 1, "model": "tiny-sdxl"},
]


def _frames(path):
    reader = imageio_ffmpeg.read_frames(str(path))
    meta = next(reader)
    return [np.frombuffer(frame, np.uint8).reshape(meta["size"][1], meta["size"][0], 3) for frame in reader]


def test_ray_workers_give_the_same_files_and_manifest_as_the_local_run(tmp_path, capsys):
    for asset in ("coffee.jpg", "brick.jpg"):
        shutil.copy(ROOT / "assets" / asset, tmp_path / asset)
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text("\n".join(json.dumps(j) for j in JOBS) + "\n")
    assert main(["render", str(jobs), "--out", str(tmp_path / "local")]) == 0
    local = tmp_path / "local"
    for workers, tolerance in ((1, 0), (2, 1)):
        # One worker computes with the driver's CPU threads: bit-identical. Two share them out,
        # and CPU float reductions may then differ by one pixel level.
        ray = tmp_path / f"ray{workers}"
        assert main(["render", str(jobs), "--out", str(ray), "--ray", "--workers", str(workers)]) == 0
        assert sorted(p.name for p in local.iterdir()) == sorted(p.name for p in ray.iterdir())
        for name in ("fox-7.png", "fox-8.png", "coffee.png", "cat.png"):
            a, b = (np.asarray(Image.open(folder / name), dtype=int) for folder in (local, ray))
            assert np.abs(a - b).max() <= tolerance, (workers, name)
        frames = zip(_frames(local / "waves.mp4"), _frames(ray / "waves.mp4"))
        assert all(np.abs(a.astype(int) - b).max() <= tolerance + 2 for a, b in frames)  # + H.264 rounding
        records = [json.loads(line) for line in (ray / "manifest.jsonl").read_text().splitlines()]
        assert sorted((r["id"], r["status"]) for r in records) == [("cat", "ok"), ("coffee", "ok"), ("fox", "ok"),
                                                                   ("waves", "ok")]
    capsys.readouterr()
    assert main(["render", str(jobs), "--out", str(tmp_path / "ray2"), "--ray"]) == 0  # resume: nothing to do
    assert "0 done, 4 already complete" in capsys.readouterr().out


def test_workers_without_ray_is_refused(tmp_path, capsys):
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text(json.dumps(JOBS[0]) + "\n")
    assert main(["render", str(jobs), "--out", str(tmp_path / "o"), "--workers", "2"]) == 2
    assert "--workers above 1 needs --ray" in capsys.readouterr().err

"""Careless and hostile input (issue 14's probe): nothing lost, nothing hangs, one line each.

Data loss first (render collisions, clean-up of temporaries, concurrent renders, torn manifests,
signals), then inputs that used to end in a traceback, then hygiene (terminal escapes, BOMs,
broken cache entries).
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from PIL import Image
from samples import DEEP, bomb_png, png_with_text

from gen.cli import main
from gen.errors import GenError
from gen.outputs import render_lock, temporary_path
from gen.render import Manifest, plan_jobs, render

ROOT = Path(__file__).resolve().parent.parent
ASSETS = ROOT / "assets"


def write_jobs(folder: Path, jobs: list, name: str = "jobs.jsonl") -> Path:
    path = folder / name
    path.write_text("\n".join(j if isinstance(j, str) else json.dumps(j) for j in jobs) + "\n")
    return path


def image_job(job_id: str, **extra) -> dict:
    return {"kind": "image", "id": job_id, "prompt": job_id, "steps": 1, **extra}


def run_main(argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as exc:  # argparse's own refusals
        return exc.code


def one_line_error(capsys, command: str) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"gen {command}: error: "), err
    return last


def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid




# ----------------------------------------------------------------------------- 1. output-name collisions


def test_output_names_that_collide_within_a_job_file_are_refused_with_both_lines(tmp_path):
    jobs = write_jobs(tmp_path, [image_job("a", batch=2, seed=1), image_job("b"), image_job("a-1")])
    entries, errors = plan_jobs(jobs, tmp_path / "out")
    assert [e.line for e in errors] == [3]
    assert "a-1.png is also written by line 1 (job 'a')" in errors[0].message
    with pytest.raises(GenError, match="1 invalid job"):
        render(jobs, tmp_path / "out", log=lambda _: None)
    assert not (tmp_path / "out").exists()


def test_an_output_already_written_by_another_job_is_never_taken_as_this_jobs(tmp_path):
    out = tmp_path / "out"
    assert render(write_jobs(tmp_path, [image_job("a-1", seed=5)], "first.jsonl"), out).done == 1
    before = (out / "a-1.png").read_bytes()
    second = write_jobs(tmp_path, [image_job("a", batch=2, seed=1)], "second.jsonl")
    logged = []
    with pytest.raises(GenError, match="1 invalid job"):
        render(second, out, log=logged.append)
    assert logged == ["invalid job, line 1: a-1.png already in the output folder was written by job 'a-1'; "
                      "give this job another id or render into another folder"]
    assert (out / "a-1.png").read_bytes() == before and not (out / "a-2.png").exists()


def test_an_unrelated_file_where_an_output_goes_is_not_taken_for_a_finished_output(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    Image.new("RGB", (8, 8)).save(out / "fox.png")  # the user's own picture, no gen metadata
    logged = []
    with pytest.raises(GenError, match="1 invalid job"):
        render(write_jobs(tmp_path, [image_job("fox")]), out, log=logged.append)
    assert "fox.png is already in the output folder and was not made by this job" in logged[0]
    summary = render(write_jobs(tmp_path, [image_job("fox"), image_job("cat")]), out, skip_invalid=True,
                     log=logged.append)
    assert (summary.done, summary.invalid) == (1, 1) and Image.open(out / "fox.png").size == (8, 8)


# ----------------------------------------------------------------------------- 2. clean-up of temporaries


def test_only_gens_own_stale_temporaries_are_removed(tmp_path):
    out = tmp_path / "out"
    (out / "deep").mkdir(parents=True)
    users = [out / ".notes.tmp.txt", out / "deep" / ".keep.tmpl", out / ".cache.tmpdata", out / ".x.tmp",
             out / ".fox.png.12345.abcdefgh.tmp.png.bak"]
    for path in users:
        path.write_text("mine")
    stale = temporary_path(out / "fox.png", pid=dead_pid())
    stale.write_bytes(b"half a png")
    live = temporary_path(out / "fox.png", pid=os.getpid())  # a write in progress (this process): kept
    live.write_bytes(b"being written")
    assert render(write_jobs(tmp_path, [image_job("fox")]), out).done == 1
    assert all(path.read_text() == "mine" for path in users)
    assert not stale.exists() and live.exists()


# ----------------------------------------------------------------------------- 3. one render per folder


def test_a_second_render_on_the_same_folder_refuses_naming_the_first_or_waits(tmp_path):
    out = tmp_path / "out"
    jobs = write_jobs(tmp_path, [image_job("fox")])
    with render_lock(out, command="gen render first.jsonl"):
        with pytest.raises(GenError, match=r"another gen render \(pid \d+ .*gen render first.jsonl\) is writing"):
            render(jobs, out)
        assert not (out / "fox.png").exists()
    held = render_lock(out, command="holder")  # held now, released after a second while the renderer waits
    held.__enter__()
    release = threading.Timer(1.0, held.__exit__, (None, None, None))
    release.start()
    started = time.monotonic()
    assert render(jobs, out, wait=True, log=lambda _: None).done == 1
    assert time.monotonic() - started >= 0.9
    release.join()


def test_a_lock_left_by_a_killed_render_does_not_block(tmp_path):
    out = tmp_path / "out"
    jobs = write_jobs(tmp_path, [image_job("fox")])
    script = textwrap.dedent(f"""
        import os, time
        from gen.outputs import render_lock
        with render_lock({str(out)!r}, command="killed"):
            print("locked", flush=True)
            time.sleep(60)
    """)
    holder = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    holder.kill()
    holder.wait()
    assert render(jobs, out).done == 1


# ----------------------------------------------------------------------------- 4. a torn manifest


def test_a_torn_last_manifest_line_does_not_swallow_the_next_record(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "manifest.jsonl").write_text('{"id": "old", "status": "ok", "outp')  # cut by a crash mid-write
    assert render(write_jobs(tmp_path, [image_job("fox")]), out).done == 1
    lines = (out / "manifest.jsonl").read_text().splitlines()
    assert lines[0] == '{"id": "old", "status": "ok", "outp'  # kept as it was, not glued to
    assert json.loads(lines[1])["id"] == "fox"
    assert [r["id"] for r in Manifest(out / "manifest.jsonl").records()] == ["fox"]


# ----------------------------------------------------------------------------- 5. signals


SLOW_WRITE = textwrap.dedent("""
    import sys, time
    from gen.cli import handle_termination
    from gen.outputs import atomic_write

    def slow(tmp):
        tmp.write_bytes(b"partial")
        print("writing", flush=True)
        time.sleep(60)

    handle_termination()
    try:
        atomic_write(sys.argv[1], slow)
    except SystemExit:
        raise
""")


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_sigterm_cleans_up_like_sigint(tmp_path, signum):
    target = tmp_path / "x.png"
    process = subprocess.Popen([sys.executable, "-c", SLOW_WRITE, str(target)], stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "writing"
    assert len(list(tmp_path.iterdir())) == 1  # the temporary exists while writing
    process.send_signal(signum)
    assert process.wait(timeout=30) != 0
    assert list(tmp_path.iterdir()) == []


def test_the_next_run_of_an_output_removes_what_a_killed_write_left(tmp_path, capsys):
    target = tmp_path / "x.png"
    process = subprocess.Popen([sys.executable, "-c", SLOW_WRITE, str(target)], stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "writing"
    process.kill()
    process.wait()
    assert len(list(tmp_path.iterdir())) == 1  # SIGKILL leaves the temporary
    assert main(["image", "x", "--steps", "1", "--out", str(target)]) == 0
    assert [p.name for p in tmp_path.iterdir()] == ["x.png"]


# ----------------------------------------------------------------------------- 6.–13. one line, exit 2


@pytest.mark.parametrize("style,message", [
    ("brick.jpg:inf", "--style weight in 'STYLE:inf' must be a finite number, got inf"),
    ("brick.jpg:nan", "--style weight in 'STYLE:nan' must be a finite number, got nan"),
])
def test_non_finite_style_weights_are_refused_before_loading(tmp_path, capsys, monkeypatch, style, message):
    monkeypatch.setattr("gen.jobs.load_pipeline_for", lambda plan: pytest.fail("loaded a model"))
    path = str(ASSETS / style.split(":")[0])
    argv = ["style", "--content", str(ASSETS / "coffee.jpg"), "--style", str(ASSETS / "gravel.jpg"),
            "--style", f"{path}:{style.split(':')[1]}", "--out", str(tmp_path / "o.png")]
    assert run_main(argv) == 2
    assert message.replace("STYLE", path) in one_line_error(capsys, "style")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("argv,message", [
    (["style", "--content", "C", "--style", "S", "--temperature", "inf"], "--temperature must be a finite number"),
    (["video", "x", "--decay", "inf"], "--decay must be a finite number, got inf"),
    (["video", "x", "--guidance", "nan"], "--guidance must be between 0 and 50, got nan"),
    (["image", "x", "--guidance", "inf"], "--guidance must be between 0 and 50, got inf"),
    (["video", "x", "--lora", "L:inf"], "--lora scale in 'L:inf' must be a finite number"),
])
def test_non_finite_numbers_are_refused_before_loading(tmp_path, capsys, monkeypatch, argv, message):
    monkeypatch.setattr("gen.jobs.load_pipeline_for", lambda plan: pytest.fail("loaded a model"))
    argv = [str(ASSETS / "coffee.jpg") if a == "C" else str(ASSETS / "brick.jpg") if a == "S" else a for a in argv]
    assert run_main(argv + ["--out", str(tmp_path / ("o.mp4" if argv[0] == "video" else "o.png"))]) == 2
    assert message in one_line_error(capsys, argv[0])
    assert list(tmp_path.iterdir()) == []


def test_strict_json_everywhere():
    from gen.jsonio import dumps

    with pytest.raises(ValueError):
        dumps({"decay": float("inf")})
    assert dumps({"a": 1}) == '{"a": 1}'


def test_bomb_pngs_are_one_line_in_gen_info_and_never_taken_for_outputs(tmp_path, capsys):
    bomb = bomb_png(tmp_path / "bomb.png")
    assert run_main(["info", str(bomb)]) == 2
    assert "bomb.png is too large to read" in one_line_error(capsys, "info")
    out = tmp_path / "out"
    out.mkdir()
    shutil.copy(bomb, out / "fox.png")
    logged = []
    with pytest.raises(GenError, match="1 invalid job"):
        render(write_jobs(tmp_path, [image_job("fox")]), out, log=logged.append)
    assert "fox.png is already in the output folder and was not made by this job (fox.png is too large" in logged[0]


@pytest.mark.parametrize("where", ["png", "sidecar", "job line"])
def test_deeply_nested_json_is_one_line(tmp_path, capsys, where):
    if where == "png":
        assert run_main(["info", str(png_with_text(tmp_path / "deep.png", gen=DEEP))]) == 2
        assert "nested too deeply" in one_line_error(capsys, "info")
    elif where == "sidecar":
        (tmp_path / "deep.json").write_text(DEEP)
        assert run_main(["info", str(tmp_path / "deep.json")]) == 2
        assert "nested too deeply" in one_line_error(capsys, "info")
    else:
        _, errors = plan_jobs(write_jobs(tmp_path, [DEEP, image_job("ok")]), tmp_path / "out")
        assert [e.line for e in errors] == [1] and "nested too deeply" in errors[0].message


def test_manifests_with_bad_bytes_or_lines_are_read_around_and_a_manifest_folder_is_refused(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "manifest.jsonl").write_bytes(b'\xff\xfe{"id": 1}\n[1, 2]\n"text"\n{"id": "kept", "status": "ok"}\n')
    assert [r["id"] for r in Manifest(out / "manifest.jsonl").records()] == ["kept"]
    assert render(write_jobs(tmp_path, [image_job("fox")]), out).done == 1
    other = tmp_path / "other"
    (other / "manifest.jsonl").mkdir(parents=True)
    with pytest.raises(GenError, match="manifest.jsonl' is a folder"):
        render(write_jobs(tmp_path, [image_job("fox")]), other)
    assert sorted(p.name for p in other.iterdir()) == ["manifest.jsonl"]  # nothing written first


@pytest.mark.parametrize("argv,message", [
    (["video", "x", "--frames", "1000001"], "--frames 1000001 is more than tiny-wan takes"),
    (["video", "x", "--width", "4096", "--height", "4096"], "--width 4096 is more than tiny-wan takes"),
    (["mask", "--frames", "100001"], "--frames 100001 is more than wan2.1-1.3b takes"),
    (["mask", "--frames", "1000001"], "--frames 1000001 is more than wan2.1-1.3b takes"),
    (["mask", "--model", "hunyuan-video", "--frames", "8001"], "tokens, more than gen handles"),
])
def test_sizes_are_bounded_by_the_model_and_by_memory(tmp_path, capsys, argv, message):
    started = time.monotonic()
    out = ["--out", str(tmp_path / "o.mp4")] if argv[0] == "video" else []
    assert run_main(argv + out) == 2
    assert message in one_line_error(capsys, argv[0])
    assert time.monotonic() - started < 10 and list(tmp_path.iterdir()) == []


def test_an_output_folder_that_cannot_be_written_is_refused_before_loading(capsys, monkeypatch):
    monkeypatch.setattr("gen.jobs.load_pipeline_for", lambda plan: pytest.fail("loaded a model"))
    assert run_main(["image", "x", "--out", "/proc/x.png"]) == 2
    assert "cannot write into '/proc'" in one_line_error(capsys, "image")


def test_pickled_weights_in_a_model_folder_are_refused_in_one_line(tmp_path, capsys):
    import torch
    from safetensors.torch import load_file

    from gen.tiny_models import tiny_preset_path

    folder = tmp_path / "model"
    shutil.copytree(tiny_preset_path("tiny-sd"), folder)
    weights = folder / "unet" / "diffusion_pytorch_model.safetensors"
    torch.save(load_file(weights), folder / "unet" / "diffusion_pytorch_model.bin")
    weights.unlink()
    assert run_main(["image", "x", "--model", str(folder), "--out", str(tmp_path / "o.png")]) == 2
    line = one_line_error(capsys, "image")
    assert "unet/diffusion_pytorch_model.bin is pickled" in line and "safetensors" in line
    assert not (tmp_path / "o.png").exists()


# ----------------------------------------------------------------------------- 15.–17. hygiene


def test_gen_info_escapes_terminal_control_sequences(tmp_path, capsys):
    hostile = "a fox\x1b]0;owned\x07\x1b]52;c;ZXZpbA==\x07\rfake line\x9b2J"
    path = png_with_text(tmp_path / "h.png", parameters=hostile, gen=json.dumps({"prompt": hostile}))
    assert main(["info", str(path)]) == 0
    out = capsys.readouterr().out
    assert not any(c in out for c in "\x1b\x07\r\x9b")
    assert "a fox\\x1b]0;owned\\x07" in out


def test_job_files_with_a_byte_order_mark_are_read_and_duplicate_csv_columns_refused(tmp_path):
    (tmp_path / "excel.csv").write_bytes("kind,id,prompt,steps\r\nimage,fox,a fox,1\r\n".encode("utf-8-sig"))
    (tmp_path / "bom.jsonl").write_bytes((json.dumps(image_job("cat")) + "\n").encode("utf-8-sig"))
    for name in ("excel.csv", "bom.jsonl"):
        entries, errors = plan_jobs(tmp_path / name, tmp_path / "out")
        assert not errors and len(entries) == 1
    (tmp_path / "dup.csv").write_text("kind,prompt,steps,steps\nimage,a fox,1,2\n")
    with pytest.raises(GenError, match="column 'steps' appears twice"):
        plan_jobs(tmp_path / "dup.csv", tmp_path / "out")


def test_a_cached_but_broken_hub_model_is_not_called_uncached(tmp_path, capsys, monkeypatch):
    snapshot = Path(os.environ["HF_HOME"]) / "hub" / "models--someone--broken" / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    (snapshot / "model_index.json").write_text('{"_class_name": "StableDiffusionPipeline", "unet": ["diffusers"')
    (snapshot.parent.parent / "refs").mkdir()
    (snapshot.parent.parent / "refs" / "main").write_text("abc123")
    try:
        assert run_main(["image", "x", "--model", "someone/broken", "--out", str(tmp_path / "o.png")]) == 2
    finally:
        shutil.rmtree(snapshot.parent.parent)
    line = one_line_error(capsys, "image")
    assert "is in the Hugging Face cache" in line and "but cannot be loaded" in line and "not in the" not in line

"""The web UI through its API (gradio_client): every endpoint, errors as messages, a full queue."""

import concurrent.futures
import json
import socket
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from gradio_client import Client, handle_file
from PIL import Image

from app.ui import QUEUE_SIZE, _send_to_tab, launch
from gen.metadata import read_png_metadata

ASSETS = Path(__file__).resolve().parent.parent / "assets"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    port = _free_port()  # served exactly as `gen app` serves it (upload limit, queue), without blocking
    demo = launch(port=port, out_dir=str(tmp_path_factory.mktemp("app-out")), device="cpu", block=False)
    url = f"http://127.0.0.1:{port}/"
    yield url, Client(url, verbose=False)
    demo.close()


def test_every_endpoint_has_an_api_name(served):
    _, client = served
    endpoints = set(client.view_api(print_info=False, return_format="dict")["named_endpoints"])
    assert {"/image", "/style", "/video", "/png_info", "/video_info", "/mask"} <= endpoints


def test_image_endpoint_writes_pngs_with_parameters(served):
    _, client = served
    # The session gallery is state, not an API output: the API returns the images and the parameters.
    paths, params_json = client.predict("a fox", "", "tiny-sd", "128", "64", "2", "", 7, "auto", 2, api_name="/image")
    assert len(paths) == 2
    params = json.loads(params_json)
    assert [p["seed"] for p in params] == [7, 8] and params[0]["entropy_scaling_active"]
    image = paths[0]["image"] if isinstance(paths[0], dict) else paths[0]
    assert Image.open(image).size == (128, 64)


def test_style_and_png_info_endpoints(served):
    _, client = served
    result, params_json = client.predict(
        handle_file(str(ASSETS / "coffee.jpg")), [handle_file(str(ASSETS / "brick.jpg"))], "", "tiny-sd", 0.5, 1.5,
        3, "64", True, None, None, api_name="/style")
    assert json.loads(params_json)["preserve_color"] is True
    text, params = client.predict(handle_file(result), api_name="/png_info")
    assert text.startswith("style transfer: coffee.jpg") and json.loads(params)["kind"] == "style"
    assert read_png_metadata(result)[1]["gamma"] == 0.75


def test_style_tab_advanced_takes_the_convention_first_injected_step_and_layers(served):
    _, client = served
    _, params_json = client.predict(
        handle_file(str(ASSETS / "coffee.jpg")), [handle_file(str(ASSETS / "brick.jpg"))], "", "tiny-sd", 0.5, 1.5,
        3, "64", False, None, None, "port", "1", "vsp, up_blocks.1.attentions.0.transformer_blocks.0.attn1",
        api_name="/style")
    params = json.loads(params_json)
    assert (params["convention"], params["inject_from"]) == ("port", 1)
    assert params["layers"][-1] == "up_blocks.1.attentions.0.transformer_blocks.0.attn1" and len(params["layers"]) == 3
    with pytest.raises(Exception, match="Inject from step must be a whole step number from 1 to 2"):
        client.predict(handle_file(str(ASSETS / "coffee.jpg")), [handle_file(str(ASSETS / "brick.jpg"))], "",
                       "tiny-sd", 0.5, 1.5, 3, "64", False, None, None, "original", "0", "", api_name="/style")


def test_painted_mask_gives_the_same_result_as_the_same_mask_uploaded(served, tmp_path):
    _, client = served
    content = ASSETS / "coffee.jpg"
    width, height = Image.open(content).size
    layer = np.zeros((height, width, 4), np.uint8)
    layer[:, : width // 2] = (255, 61, 127, 255)  # the brush's colour, fully opaque, over the left half
    Image.fromarray(layer, "RGBA").save(tmp_path / "layer.png")
    Image.fromarray((layer[..., 3] > 0).astype(np.uint8) * 255, "L").save(tmp_path / "mask.png")
    painted = {"background": handle_file(str(content)), "layers": [handle_file(str(tmp_path / "layer.png"))],
               "composite": handle_file(str(content))}
    common = (handle_file(str(content)), [handle_file(str(ASSETS / "brick.jpg"))], "", "tiny-sd", 0.5, 1.5, 2, "64",
              False)
    from_paint, params = client.predict(*common, None, painted, api_name="/style")
    from_upload, _ = client.predict(*common, handle_file(str(tmp_path / "mask.png")), None, api_name="/style")
    unmasked, _ = client.predict(*common, None, None, api_name="/style")
    assert json.loads(params)["mask"] is True
    a, b, c = (np.asarray(Image.open(p), dtype=int) for p in (from_paint, from_upload, unmasked))
    assert np.array_equal(a, b)
    assert np.abs(a - c)[:, -8:].mean() > 1  # outside the painted half the content shows, not the style
    with pytest.raises(Exception, match="both uploaded and painted"):
        client.predict(*common, handle_file(str(tmp_path / "mask.png")), painted, api_name="/style")


def test_video_sidecar_and_mask_endpoints(served, tmp_path):
    _, client = served
    video, params_json = client.predict("waves", "tiny-wan", 5, 64, 48, 2, "radial", "", "", "", "block", 1,
                                        api_name="/video")
    path = video["video"] if isinstance(video, dict) else video
    assert Path(path).suffix == ".mp4" and json.loads(params_json)["frames"] == 5
    sidecar = tmp_path / "waves.json"  # the API hands out a copy of the video; its sidecar is the parameters
    sidecar.write_text(params_json)
    text, params = client.predict(handle_file(str(sidecar)), api_name="/video_info")
    assert text == "video: waves" and json.loads(params)["latent_frames"] == 2
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(Exception, match="bad.json is not valid JSON"):
        client.predict(handle_file(str(tmp_path / "bad.json")), api_name="/video_info")
    picture, text = client.predict("wan2.1-1.3b", 81, 832, 480, "", "block", api_name="/mask")
    assert "32760 tokens" in text and "66.2 %" in text


def test_video_tab_takes_a_first_image_and_names_it_in_the_record(served, tmp_path):
    _, client = served
    first = tmp_path / "first.png"
    Image.fromarray((np.random.RandomState(0).rand(48, 80, 3) * 255).astype(np.uint8)).save(first)
    video, params_json = client.predict("waves", "tiny-wan-i2v", 5, 64, 64, 1, "radial", "", "", "", "block", 1,
                                        handle_file(str(first)), None, None, "", api_name="/video")
    params = json.loads(params_json)
    assert (params["mode"], params["image"][-4:], params["frames"]) == ("image-to-video", ".png", 5)
    import hashlib

    assert params["input_sha256"]["image"] == hashlib.sha256(first.read_bytes()).hexdigest()
    with pytest.raises(Exception, match="tiny-wan-i2v needs a first-frame image \\(First image\\)"):
        client.predict("waves", "tiny-wan-i2v", 5, 64, 64, 1, "radial", "", "", "", "block", 1, api_name="/video")
    with pytest.raises(Exception, match="Strength applies to video-to-video only"):
        client.predict("waves", "tiny-wan", 5, 64, 64, 1, "radial", "", "", "", "block", 1, None, None, None, "0.5",
                       api_name="/video")


@pytest.mark.parametrize("arguments,message", [
    (("a fox", "", "tiny-sd", "100", "64", "2", "", 7, "auto", 1), "Width 100 is not a multiple of 8"),
    (("a fox", "", "no-such-model", "64", "64", "2", "", 7, "auto", 1), "unknown model 'no-such-model'"),
    (("a fox", "", "tiny-sd", "64", "64", "0", "", 7, "auto", 1), "Steps must be between 1 and 500"),
    (("a fox", "", "tiny-sd", "wide", "", "", "", 7, "auto", 1), "Width must be a whole number, got 'wide'"),
    (("a fox", "", "tiny-sd3", "136", "80", "2", "", 7, "auto", 1, ""), "Width 136 is not a multiple of 16; nearest "
                                                                          "valid: 128 or 144"),
    (("a fox", "fog", "tiny-flux", "144", "80", "2", "", 7, "auto", 1, ""), "a negative prompt on tiny-flux needs "
                                                                              "True CFG > 1"),
    (("a fox", "", "tiny-sd3", "144", "80", "2", "", 7, "auto", 1, "2"), "True CFG is an option of FLUX.1 models"),
])
def test_invalid_image_input_returns_the_message(served, arguments, message):
    _, client = served
    with pytest.raises(Exception, match=message):
        client.predict(*arguments, api_name="/image")


def test_model_dropdowns_offer_the_transformer_models_for_images_only(served):
    url, _ = served
    config = json.loads(urllib.request.urlopen(url + "config", timeout=10).read())
    dropdowns = [c["props"] for c in config["components"] if c.get("type") == "dropdown"
                 and c["props"].get("label") == "Model"]
    image, style = ({choice[0] for choice in d["choices"]} for d in dropdowns[:2])
    transformers = {"flux-dev", "flux-schnell", "sd35-medium", "sd35-large", "qwen-image", "tiny-flux", "tiny-sd3",
                    "tiny-qwen-image"}
    assert transformers <= image and {"sd15", "sdxl", "tiny-sd"} <= image
    assert not transformers & style and {"sd15", "sdxl", "tiny-sd"} <= style


@pytest.mark.parametrize("model, negative, true_cfg", [("tiny-flux", "fog", "3"), ("tiny-sd3", "fog", ""),
                                                       ("tiny-qwen-image", "", "")])
def test_image_endpoint_runs_the_transformer_models(served, model, negative, true_cfg):
    _, client = served
    paths, params_json = client.predict("a fox", negative, model, "144", "80", "2", "", 7, "auto", 1, true_cfg,
                                        api_name="/image")
    params = json.loads(params_json)[0]
    assert params["model"] == model and params["entropy_scaling_active"] and params["negative_prompt"] == negative
    assert params["true_cfg"] == (float(true_cfg) if true_cfg else None)
    image = paths[0]["image"] if isinstance(paths[0], dict) else paths[0]
    assert Image.open(image).size == (144, 80)


def test_prompts_that_look_like_flags_are_text_and_the_app_keeps_answering(served):
    url, client = served
    for prompt, negative in (("--help", "-blurry"), ("-h", "--out /etc/x")):
        _, params_json = client.predict(prompt, negative, "tiny-sd", "64", "64", "1", "", 1, "auto", 1,
                                        api_name="/image")
        params = json.loads(params_json)[0]
        assert (params["prompt"], params["negative_prompt"]) == (prompt, negative)
    video, params_json = client.predict("--help", "tiny-wan", 5, 32, 32, 1, "dense", "", "", "", "block", 1,
                                        api_name="/video")
    assert json.loads(params_json)["prompt"] == "--help"
    assert urllib.request.urlopen(url + "config", timeout=10).status == 200
    assert not Path("/etc/x").exists()


def test_invalid_video_and_style_input(served):
    _, client = served
    with pytest.raises(Exception, match="takes 4k\\+1 frames"):
        client.predict("w", "tiny-wan", 16, 64, 64, 1, "radial", "", "", "", "block", 1, api_name="/video")
    with pytest.raises(Exception, match="1 style image\\(s\\) but 2 weight\\(s\\)"):
        client.predict(handle_file(str(ASSETS / "coffee.jpg")), [handle_file(str(ASSETS / "brick.jpg"))], "1, 2",
                       "tiny-sd", 0.5, 1.5, 2, "64", False, None, None, api_name="/style")


def _bad_files(folder: Path) -> dict[str, Path]:
    from PIL.PngImagePlugin import PngInfo
    from samples import DEEP, bomb_png

    (folder / "notes.png").write_text("not a picture")
    info = PngInfo()
    info.add_text("gen", "x" * (8 * 2**20), zip=True)  # 8 MB of text in a few kB: a zTXt bomb
    Image.new("RGB", (8, 8)).save(folder / "ztxt.png", pnginfo=info)
    (folder / "deep.json").write_text(DEEP)
    return {"bomb": bomb_png(folder / "bomb.png"), "text": folder / "notes.png", "ztxt": folder / "ztxt.png",
            "deep": folder / "deep.json"}


@pytest.mark.parametrize("case,endpoint,message", [
    ("bomb", "/png_info", "bomb.png is too large to read"),
    ("text", "/png_info", "cannot read notes.png as an image"),
    ("ztxt", "/png_info", "cannot read ztxt.png as an image"),
    ("deep", "/video_info", "deep.json is not usable JSON: nested too deeply"),
    ("bomb", "/style", "content image bomb.png is too large"),
    ("text", "/style", "content image notes.png is not an image file"),
])
def test_hostile_uploads_get_gens_one_line_message(served, tmp_path, case, endpoint, message):
    _, client = served
    upload = handle_file(str(_bad_files(tmp_path)[case]))
    arguments = ((upload, [handle_file(str(ASSETS / "brick.jpg"))], "", "tiny-sd", 0.5, 1.5, 2, "64", False, None,
                  None) if endpoint == "/style" else (upload,))
    with pytest.raises(Exception) as refused:
        client.predict(*arguments, api_name=endpoint)
    assert message in str(refused.value) and "upstream" not in str(refused.value)


@pytest.mark.parametrize("frames,message", [(100001, "Frames 100001 is more than wan2.1-1.3b takes"),
                                            (1000001, "Frames 1000001 is more than wan2.1-1.3b takes")])
def test_the_mask_picture_refuses_huge_layouts_quickly(served, frames, message):
    _, client = served
    with pytest.raises(Exception, match=message):
        client.predict("wan2.1-1.3b", frames, 832, 480, "", "block", api_name="/mask")


def test_many_clients_complete_or_hear_the_queue_is_full(served):
    url, _ = served
    clients = [Client(url, verbose=False) for _ in range(QUEUE_SIZE + 6)]

    def one(client):
        try:
            client.predict("load", "", "tiny-sd", "64", "64", "3", "", 1, "off", 1, api_name="/image")
            return "ok"
        except Exception as exc:  # noqa: BLE001
            return str(exc)

    with concurrent.futures.ThreadPoolExecutor(len(clients)) as pool:
        futures = [pool.submit(one, c) for c in clients]
        # The app keeps answering while the queue is busy.
        assert urllib.request.urlopen(url + "config", timeout=10).status == 200
        outcomes = [f.result(timeout=300) for f in futures]
    assert outcomes.count("ok") >= 1
    others = [o for o in outcomes if o != "ok"]
    assert all("queue" in o.lower() and "full" in o.lower() for o in others), others


def test_uploads_over_the_size_limit_are_refused(served, tmp_path):
    url, _ = served
    big = tmp_path / "big.png"
    big.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(26 * 2**20))  # 26 MB, over the 25 MB limit
    boundary = "gen-test-boundary"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"big.png\"\r\n"
            f"Content-Type: image/png\r\n\r\n").encode() + big.read_bytes() + f"\r\n--{boundary}--\r\n".encode()
    request = urllib.request.Request(url + "gradio_api/upload", data=body, method="POST",
                                     headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=60)
    assert refused.value.code == 413
    assert "maximum" in refused.value.read().decode().lower()


def test_parameters_go_back_to_the_tab_they_came_from():
    fields = {"image": ("prompt", "negative", "model", "width", "height", "steps", "guidance", "seed", "entropy",
                        "true_cfg"),
              "style": ("model", "strength", "temperature", "steps", "size", "preserve", "weights"),
              "video": ("prompt", "model", "frames", "width", "height", "steps", "attention", "dense_layers",
                        "dense_steps", "decay", "granularity", "seed", "strength")}
    targets = {"tab": "tabs", **{kind: {name: f"{kind}.{name}" for name in names} for kind, names in fields.items()}}
    image = _send_to_tab(json.dumps({"kind": "image", "prompt": "a fox", "negative_prompt": "blur", "model": "sd15",
                                     "width": 768, "height": 512, "steps": 30, "guidance": 7.5, "seed": 9,
                                     "entropy_scaling": "on"}), targets)
    assert image["tabs"].selected == "image"
    assert {k: v for k, v in image.items() if k != "tabs"} == {
        "image.prompt": "a fox", "image.negative": "blur", "image.model": "sd15", "image.width": "768",
        "image.height": "512", "image.steps": "30", "image.guidance": "7.5", "image.seed": 9, "image.entropy": "on",
        "image.true_cfg": ""}
    flux = _send_to_tab(json.dumps({"kind": "image", "prompt": "a fox", "negative_prompt": "fog", "model": "flux-dev",
                                    "width": 512, "height": 1536, "guidance": 3.5, "guidance_kind": "distilled",
                                    "true_cfg": 4.0, "seed": 2}), targets)
    assert (flux["image.model"], flux["image.true_cfg"], flux["image.guidance"]) == ("flux-dev", "4.0", "3.5")
    video = _send_to_tab(json.dumps({"kind": "video", "prompt": "waves", "model": "tiny-wan", "frames": 17,
                                     "width": 64, "height": 48, "steps": 4, "attention": "dense", "dense_layers": 1,
                                     "dense_steps": 2, "decay": 0.2, "mask_granularity": "token", "seed": 3}), targets)
    assert video["tabs"].selected == "video" and video["video.granularity"] == "token"
    assert (video["video.frames"], video["video.decay"], video["video.attention"]) == (17, "0.2", "dense")
    v2v = _send_to_tab(json.dumps({"kind": "video", "prompt": "waves", "model": "tiny-wan", "frames": 5,
                                   "video": "in.mp4", "strength": 0.7, "input_sha256": {"video": "ab"}}), targets)
    assert v2v["video.strength"] == "0.7"  # the input video's name is said in a notice: upload it again
    with pytest.raises(Exception, match="not gen parameters"):
        _send_to_tab(json.dumps({"Steps": 20}), targets)


def test_outputs_outside_the_working_and_temp_folders_are_served(tmp_path, monkeypatch):
    # `gen app --out /elsewhere`: Gradio serves only files under the working folder, the temp
    # folder or launch()'s allowed_paths, so the output folder must be among the allowed ones.
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "temp"))
    (tmp_path / "temp").mkdir()
    port = _free_port()
    demo = launch(port=port, out_dir=str(tmp_path / "renders"), device="cpu", block=False)
    try:
        client = Client(f"http://127.0.0.1:{port}/", verbose=False)
        paths, _ = client.predict("a fox", "", "tiny-sd", "64", "64", "2", "", 3, "auto", 1, api_name="/image")
        image = paths[0]["image"] if isinstance(paths[0], dict) else paths[0]
        assert Image.open(image).size == (64, 64)
        assert len(list((tmp_path / "renders").glob("image-*.png"))) == 1
    finally:
        demo.close()

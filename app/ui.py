"""The Gradio front end: image, style and video tabs, PNG info, a session gallery.

Thin by design: every request becomes a typed job (gen.jobs) built from the widgets' values
and goes through the same checks and pipelines as `gen image|style|video`, so the UI holds no
method logic and accepts exactly what they accept; its errors name the widgets' labels. Pipelines stay loaded between
requests (one per model); one job runs at a time, the queue has a maximum size, and a
Stop button cancels between denoising steps.
"""

from __future__ import annotations

import functools
import json
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import gradio as gr

from gen.errors import GenError, user_message

ASSETS = Path(__file__).resolve().parent.parent / "assets"
QUEUE_SIZE = 8
UPLOAD_LIMIT = "25mb"
# Sizes on the 16-pixel grid, so that every model family takes them (UNets need multiples of 8).
ASPECTS = {"1:1": ("512", "512"), "3:2": ("512", "336"), "16:9": ("512", "288"), "2.4:1": ("512", "208")}
RANDOM_NOTICE = ("**Offline demo models**: the tiny presets have random weights, so their pictures are "
                 "noise-like. Pick a real model (e.g. `sd15`, `wan2.1-1.3b`) where it is downloaded.")


class Cancelled(Exception):
    pass


def one_line_errors(handler):
    """Any failure of a UI handler is shown as gen's one-line message (fields named by their labels),
    never as Gradio's generic "error" or a traceback."""

    @functools.wraps(handler)
    def wrapped(*args, **kwargs):
        try:
            return handler(*args, **kwargs)
        except gr.Error:
            raise
        except Exception as exc:  # noqa: BLE001 - one short line on the page
            raise gr.Error(user_message(exc, label_of), print_exception=False) from None

    return wrapped


def checked_upload(image: gr.Image, what: str) -> gr.Image:
    """An image upload that a file PIL cannot open (a bomb, text named .png) turns into gen's one-line
    message, as the command line gives, instead of Gradio's generic error. (The instance's preprocess is
    wrapped, not subclassed: Gradio writes a .pyi stub beside any module that subclasses a component.)"""
    preprocess = image.preprocess

    def checked(payload):
        try:
            return preprocess(payload)
        except Exception:
            from gen.images import load_image

            try:
                load_image(payload.path, what)
            except GenError as exc:
                raise gr.Error(user_message(exc), print_exception=False) from None
            raise

    image.preprocess = checked
    return image


class Studio:
    """State shared by all requests: loaded pipelines, the cancel flag, where outputs go."""

    def __init__(self, out_dir: str | Path = "outputs/app", device: str | None = None):
        from gen.jobs import PipelineCache

        self.out_dir = Path(out_dir)
        self.device = device
        self.pipelines: dict[str, PipelineCache] = {"image": PipelineCache(), "style": PipelineCache(),
                                                    "video": PipelineCache()}
        self.cancel = threading.Event()
        self.lock = threading.Lock()  # one job per device at a time
        self.scratch = tempfile.TemporaryDirectory(prefix="gen-app-")  # painted masks; removed with the app

    def save_painted_mask(self, editor: dict | None, content: str) -> str | None:
        """The mask painted in the editor as a PNG the command line can take; None if nothing was painted."""
        from gen.images import load_image, mask_from_strokes

        mask = mask_from_strokes((editor or {}).get("layers") or [], load_image(content, "content image").size)
        if mask is None:
            return None
        path = Path(self.scratch.name) / f"mask-{time.time_ns()}.png"
        mask.save(path, format="PNG")
        return str(path)

    def run(self, kind: str, values: dict[str, Any], progress: gr.Progress) -> list[dict]:
        """Build, check and run one job from the widgets' values; records of the written files."""
        from gen.jobs import JOB_TYPES, execute, plan_job

        stamp = time.strftime("%Y%m%d-%H%M%S") + f"-{time.time_ns() % 10**6:06d}"
        job = JOB_TYPES[kind].from_dict(values, text=True)
        job = job.replace(out=str(self.out_dir / f"{kind}-{stamp}{job.extension}"), device=self.device)
        plan = plan_job(job)
        self.cancel.clear()

        def on_step(phase: str, step: int, total: int) -> None:
            if self.cancel.is_set():
                raise Cancelled()
            progress((step, total), desc=phase)

        try:
            with self.lock:
                pipe = self.pipelines[plan.kind].get(plan)
                return execute(plan, pipe, on_step)
        except Cancelled:
            raise gr.Error("cancelled; nothing was written for the unfinished output", print_exception=False) from None


# The widgets' labels, by job field: the UI's names in its error messages and on the page.
LABELS = {
    "prompt": "Prompt", "negative": "Negative prompt", "model": "Model", "width": "Width", "height": "Height",
    "steps": "Steps", "guidance": "Guidance", "true_cfg": "True CFG", "seed": "Seed", "entropy_scaling": "Entropy scaling",
    "batch": "Batch count", "content": "Content", "style": "Style image(s)", "strength": "Strength",
    "temperature": "Temperature T", "size": "Size", "preserve_color": "Preserve colour", "mask": "Mask",
    "frames": "Frames", "attention": "Attention", "dense_layers": "Dense layers", "dense_steps": "Dense steps",
    "decay": "Decay", "mask_granularity": "Mask granularity", "image": "First image", "last_image": "Last image",
    "video": "Input video", "convention": "Convention", "inject_from": "Inject from step",
    "layers": "Injected layers",
}
VIDEO_INPUTS = ("image", "last_image", "video")  # uploads: a sidecar names them, "send to tab" cannot restore them


def label_of(field: str) -> str:
    return LABELS.get(field, field.replace("_", " ").capitalize())


def _label(field: str, hint: str = "") -> str:
    """A widget's label: the field's name in the UI, with a hint in brackets."""
    return f"{label_of(field)} ({hint})" if hint else label_of(field)


def build_app(studio: Studio, image_model: str = "tiny-sd", style_model: str = "tiny-sd",
              video_model: str = "tiny-wan") -> gr.Blocks:
    from gen.attention.entropy import ENTROPY_MODES
    from gen.attention.radial import GRANULARITIES
    from gen.jobs import ImageJob, StyleJob, VideoJob
    from gen.loading import cached_pipelines
    from gen.style import CONVENTIONS, LAYER_SETS
    from pipelines.text_to_video import ATTENTION_MODES
    from gen.models import IMAGE_PIPELINES, PRESETS, UNET_FAMILIES
    from gen.video_models import DEFAULT_STRENGTH, VIDEO_PIPELINES, VIDEO_PRESETS

    cached = cached_pipelines()  # models already downloaded, beyond the presets

    def model_choices(families) -> list[str]:
        return [n for n, p in PRESETS.items() if p.source != "arch" and p.family in families] + sorted(
            r for r, c in cached.items() if IMAGE_PIPELINES.get(c) in families and r not in
            {p.location for p in PRESETS.values()})

    image_models = model_choices(set(IMAGE_PIPELINES.values()))  # every family: UNets and transformers
    style_models = model_choices(UNET_FAMILIES)
    video_models = [n for n, p in VIDEO_PRESETS.items() if p.source != "arch"] + sorted(
        r for r, c in cached.items() if c in VIDEO_PIPELINES and r not in {p.repo_id for p in VIDEO_PRESETS.values()})

    @one_line_errors
    def generate_image(prompt, negative, model, width, height, steps, guidance, seed, entropy, batch, true_cfg,
                       gallery, progress=gr.Progress()):
        values = dict(prompt=prompt or "", negative=negative or "", model=model, width=width, height=height,
                      steps=steps, guidance=guidance, seed=seed, entropy_scaling=entropy, batch=batch,
                      true_cfg=true_cfg)
        records = studio.run("image", values, progress)
        return [r["path"] for r in records], (gallery or []) + records, _params_json(records)

    @one_line_errors
    def generate_style(content, styles, weights, model, strength, temperature, steps, size, preserve, mask,
                       painted, convention, inject_from, layers, gallery, progress=gr.Progress()):
        if not content:
            raise gr.Error("upload a content image")
        files = [f if isinstance(f, str) else getattr(f, "name", str(f)) for f in (styles or [])]
        if not files:
            raise gr.Error("upload at least one style image")
        values = _weights(weights, len(files))
        painted_mask = studio.save_painted_mask(painted, content)
        if painted_mask and mask:
            raise gr.Error("a mask was both uploaded and painted; clear one of them")
        job = dict(content=[content], style=[f"{path}:{weight:g}" for path, weight in zip(files, values)],
                   model=model, strength=strength, temperature=temperature, steps=steps, size=size,
                   preserve_color=bool(preserve), mask=painted_mask or mask, convention=convention,
                   inject_from=inject_from, layers=_names(layers))
        records = studio.run("style", job, progress)
        return records[0]["path"], (gallery or []) + records, _params_json(records)

    @one_line_errors
    def generate_video(prompt, model, frames, width, height, steps, attention, dense_layers, dense_steps, decay,
                       granularity, seed, image=None, last_image=None, video=None, strength=None, gallery=None,
                       progress=gr.Progress()):
        inputs = {field: path for field, path in zip(VIDEO_INPUTS, map(_upload_path, (image, last_image, video)))
                  if path}
        values = dict(prompt=prompt or "", model=model, attention=attention, mask_granularity=granularity,
                      frames=frames, width=width, height=height, steps=steps, dense_layers=dense_layers,
                      dense_steps=dense_steps, decay=decay, seed=seed, strength=strength, **inputs)
        records = [dict(record, inputs=inputs) for record in studio.run("video", values, progress)]
        return records[0]["path"], (gallery or []) + records, _params_json(records)

    @one_line_errors
    def draw_mask(model, frames, width, height, decay, granularity):
        from gen.attention.radial import attention_flops_fraction, mask_picture
        from gen.jobs import VideoJob
        from gen.video_models import video_layout

        # The layout's settings are checked as a video job's are (and bounded before anything is allocated).
        job = VideoJob.from_dict(dict(prompt="", model=model, frames=frames, width=width, height=height, decay=decay,
                                      mask_granularity=granularity), text=True)
        preset = job.check_layout()  # an image-to-video model's mask is drawn without its image
        layout = video_layout(preset, *preset.shape(job.frames, job.width, job.height), job.decay)
        saved = 1 - attention_flops_fraction(layout, granularity)
        text = (f"{layout.frames} latent frames × {layout.tokens_per_frame} tokens = {layout.total_tokens} tokens; "
                f"attention FLOPs saved: {100 * saved:.1f} %")
        return mask_picture(layout, granularity, target_px=384), text

    @one_line_errors
    def png_info(path):
        from gen.metadata import read_png_metadata

        if not path:
            return "", "{}"
        text, params = read_png_metadata(path)
        return text or "(no parameters text)", json.dumps(params or {}, indent=2)

    @one_line_errors
    def video_info(path):
        from gen.video_io import read_sidecar

        if not path:
            return "", "{}"
        params = read_sidecar(path)
        return f"video: {params.get('prompt', '')}", json.dumps(params, indent=2)

    def show_gallery_item(items, event: gr.SelectData):
        record = (items or [])[event.index]
        files = [record["path"]]
        if record["params"].get("kind") == "video":
            from gen.video_io import sidecar_path

            files.append(str(sidecar_path(record["path"])))
            files += [path for path in record.get("inputs", {}).values() if Path(path).is_file()]  # what it came from
        return json.dumps(record["params"], indent=2), files

    def stop():
        studio.cancel.set()
        return gr.Info("stopping after the current step")

    with gr.Blocks(title="gen", analytics_enabled=False) as demo:  # no calls home from a local tool
        gr.Markdown("# gen — training-free attention methods for diffusers")
        if any(m.startswith("tiny") for m in (image_model, style_model, video_model)):
            gr.Markdown(RANDOM_NOTICE)
        gallery = gr.State([])
        with gr.Tabs() as tabs:
            with gr.Tab("Image", id="image"):
                with gr.Row():
                    with gr.Column():
                        i_prompt = gr.Textbox(label=_label("prompt"), lines=2)
                        i_negative = gr.Textbox(label=_label("negative"))
                        i_model = gr.Dropdown(image_models, value=image_model, label=_label("model"), allow_custom_value=True)
                        with gr.Row():
                            i_width = gr.Textbox(label=_label("width", "blank: training size"))
                            i_height = gr.Textbox(label=_label("height", "blank: training size"))
                        i_aspect = gr.Radio(list(ASPECTS), label="Aspect preset (at 512 wide)")
                        i_entropy = gr.Radio(list(ENTROPY_MODES), value=ImageJob.entropy_scaling, label=_label("entropy_scaling"))
                        with gr.Accordion("Advanced", open=False):
                            i_steps = gr.Textbox(label=_label("steps", "blank: per model"))
                            i_guidance = gr.Textbox(label=_label("guidance", "blank: per model; FLUX.1-dev: "
                                                                 "distilled, Qwen-Image: true CFG"))
                            i_true_cfg = gr.Textbox(value="", label=_label("true_cfg", "FLUX.1 only, for a negative "
                                                                           "prompt; blank: off"))
                            with gr.Row():
                                i_seed = gr.Number(value=7, label=_label("seed"), precision=0)
                                i_random = gr.Button("Random seed", scale=0)
                            i_batch = gr.Slider(1, 8, value=1, step=1, label=_label("batch"))
                        with gr.Row():
                            i_go = gr.Button("Generate", variant="primary")
                            i_stop = gr.Button("Stop")
                    with gr.Column():
                        i_out = gr.Gallery(label="Result", height=360)
                        i_params = gr.Code(label="Parameters", language="json")
            with gr.Tab("Style", id="style"):
                with gr.Row():
                    with gr.Column():
                        s_content = checked_upload(gr.Image(type="filepath", label=_label("content")), "content image")
                        s_styles = gr.File(file_count="multiple", file_types=["image"], label=_label("style"))
                        s_weights = gr.Textbox(label="Style weights (comma separated; blank: equal)")
                        s_model = gr.Dropdown(style_models, value=style_model, label=_label("model"), allow_custom_value=True)
                        s_strength = gr.Slider(0, 1, value=0.5, step=0.05, label=_label("strength", "0.5 = γ 0.75"))
                        s_preserve = gr.Checkbox(label=_label("preserve_color"))
                        with gr.Accordion("Advanced", open=False):
                            s_temperature = gr.Number(value=StyleJob.temperature, label=_label("temperature"))
                            s_steps = gr.Number(value=StyleJob.steps, label=_label("steps"), precision=0)
                            s_size = gr.Textbox(label=_label("size", "longer side; blank: training size"))
                            s_convention = gr.Dropdown(list(CONVENTIONS), value=StyleJob.convention,
                                                       label=_label("convention", "original: run_styleid.py; "
                                                                    "port: the authors' diffusers port"))
                            s_inject_from = gr.Textbox(value="", label=_label("inject_from",
                                                                              "0-based; blank: the convention's"))
                            s_layers = gr.Textbox(value="", label=_label("layers", f"{', '.join(LAYER_SETS)} or "
                                                                         "layer names, comma separated; blank: the "
                                                                         "convention's"))
                            s_painted = gr.ImageEditor(
                                type="numpy", format="png", elem_id="style-mask-editor",
                                label="Paint the mask (pick the brush): where the style applies",
                                sources=(), transforms=(), layers=False, eraser=gr.Eraser(),
                                brush=gr.Brush(colors=["#ff3d7f"], color_mode="fixed", default_size=24))
                            s_mask = checked_upload(gr.Image(
                                type="filepath", label="…or upload a mask (white = stylise; content's size)"), "mask")
                        with gr.Row():
                            s_go = gr.Button("Stylise", variant="primary")
                            s_stop = gr.Button("Stop")
                    with gr.Column():
                        s_out = gr.Image(label="Result", type="filepath")
                        s_params = gr.Code(label="Parameters", language="json")
                gr.Examples([[str(ASSETS / "coffee.jpg"), [str(ASSETS / "brick.jpg")]],
                             [str(ASSETS / "chelsea.jpg"), [str(ASSETS / "gravel.jpg")]]],
                            inputs=[s_content, s_styles], label="Examples (assets/)")
            with gr.Tab("Video", id="video"):
                with gr.Row():
                    with gr.Column():
                        v_prompt = gr.Textbox(label=_label("prompt"), lines=2)
                        v_model = gr.Dropdown(video_models, value=video_model, label=_label("model"), allow_custom_value=True)
                        with gr.Row():
                            v_frames = gr.Number(value=17, label=_label("frames", "4k+1"), precision=0)
                            v_width = gr.Number(value=64, label=_label("width"), precision=0)
                            v_height = gr.Number(value=64, label=_label("height"), precision=0)
                        with gr.Accordion("Input image or video (models that take them)", open=True):
                            with gr.Row():
                                v_image = gr.Image(type="filepath", label=_label("image", "image-to-video"))
                                v_last = gr.Image(type="filepath", label=_label("last_image", "first/last frame"))
                            v_video = gr.Video(sources=["upload"], label=_label("video", "video-to-video"))
                            v_strength = gr.Textbox(label=_label("strength", f"video-to-video; blank: {DEFAULT_STRENGTH}"))
                        v_attention = gr.Radio(list(ATTENTION_MODES), value=VideoJob.attention, label=_label("attention"))
                        with gr.Accordion("Radial attention", open=False):
                            v_dense_layers = gr.Textbox(label=_label("dense_layers", "blank: per model"))
                            v_dense_steps = gr.Textbox(label=_label("dense_steps", "blank: per model"))
                            v_decay = gr.Textbox(label=_label("decay", "blank: per model"))
                            v_granularity = gr.Radio(list(GRANULARITIES), value=VideoJob.mask_granularity, label=_label("mask_granularity"))
                        v_steps = gr.Number(value=4, label=_label("steps"), precision=0)
                        v_seed = gr.Number(value=1, label=_label("seed"), precision=0)
                        with gr.Row():
                            v_go = gr.Button("Generate video", variant="primary")
                            v_stop = gr.Button("Stop")
                    with gr.Column():
                        v_out = gr.Video(label="Result")
                        v_mask = gr.Image(label="Radial mask of this layout", type="numpy")
                        v_mask_text = gr.Markdown()
                        v_params = gr.Code(label="Parameters", language="json")
            with gr.Tab("PNG info", id="info"):
                with gr.Row():
                    p_file = gr.File(file_types=[".png"], label="Drop a PNG made by gen or AUTOMATIC1111")
                    p_sidecar = gr.File(file_types=[".json"], label="…or a video's .json sidecar")
                p_text = gr.Textbox(label="Parameters", lines=4)
                p_json = gr.Code(label="gen parameters", language="json", elem_id="png-info-params")
                p_send = gr.Button("Send to its tab (Image, Style or Video)")
            with gr.Tab("Gallery", id="gallery"):
                g_all = gr.Gallery(label="This session's results (select one for its parameters)", height=480,
                                   columns=4, buttons=["download", "fullscreen"])
                with gr.Row():
                    g_params = gr.Code(label="Parameters of the selected result", language="json",
                                       elem_id="gallery-params")
                    g_files = gr.File(label="Download (video: with its parameter sidecar and inputs)",
                                      file_count="multiple")

        i_random.click(lambda: int(time.time_ns() % 2**32), outputs=i_seed, api_name=False, queue=False)
        i_aspect.change(lambda a: ASPECTS.get(a, ("", "")), inputs=i_aspect, outputs=[i_width, i_height],
                        api_name=False, queue=False)
        image_event = i_go.click(generate_image, [i_prompt, i_negative, i_model, i_width, i_height, i_steps,
                                                  i_guidance, i_seed, i_entropy, i_batch, i_true_cfg, gallery],
                                 [i_out, gallery, i_params], api_name="image")
        style_event = s_go.click(generate_style, [s_content, s_styles, s_weights, s_model, s_strength, s_temperature,
                                                  s_steps, s_size, s_preserve, s_mask, s_painted, s_convention,
                                                  s_inject_from, s_layers, gallery],
                                 [s_out, gallery, s_params], api_name="style")
        s_content.change(lambda c: c, s_content, s_painted, api_name=False, queue=False)  # paint over the content
        video_event = v_go.click(generate_video, [v_prompt, v_model, v_frames, v_width, v_height, v_steps,
                                                  v_attention, v_dense_layers, v_dense_steps, v_decay, v_granularity,
                                                  v_seed, v_image, v_last, v_video, v_strength, gallery],
                                 [v_out, gallery, v_params], api_name="video")
        for button, event in ((i_stop, image_event), (s_stop, style_event), (v_stop, video_event)):
            button.click(stop, api_name=False, queue=False)
        for component in (v_model, v_frames, v_width, v_height, v_decay, v_granularity):
            component.change(draw_mask, [v_model, v_frames, v_width, v_height, v_decay, v_granularity],
                             [v_mask, v_mask_text], api_name=False, queue=False)
        demo.load(draw_mask, [v_model, v_frames, v_width, v_height, v_decay, v_granularity],
                  [v_mask, v_mask_text], api_name="mask")
        p_file.change(png_info, p_file, [p_text, p_json], api_name="png_info")
        p_sidecar.change(video_info, p_sidecar, [p_text, p_json], api_name="video_info")
        targets = {"tab": tabs,
                   "image": dict(prompt=i_prompt, negative=i_negative, model=i_model, width=i_width, height=i_height,
                                 steps=i_steps, guidance=i_guidance, seed=i_seed, entropy=i_entropy,
                                 true_cfg=i_true_cfg),
                   "style": dict(model=s_model, strength=s_strength, temperature=s_temperature, steps=s_steps,
                                 size=s_size, preserve=s_preserve, weights=s_weights, convention=s_convention,
                                 inject_from=s_inject_from, layers=s_layers),
                   "video": dict(prompt=v_prompt, model=v_model, frames=v_frames, width=v_width, height=v_height,
                                 steps=v_steps, attention=v_attention, dense_layers=v_dense_layers,
                                 dense_steps=v_dense_steps, decay=v_decay, granularity=v_granularity, seed=v_seed,
                                 strength=v_strength)}
        p_send.click(lambda text: _send_to_tab(text, targets), p_json,
                     [tabs] + [c for kind in ("image", "style", "video") for c in targets[kind].values()],
                     api_name=False)
        gallery.change(lambda items: [(r["path"], _caption(r["params"])) for r in items], gallery, g_all,
                       api_name=False, queue=False)
        g_all.select(show_gallery_item, gallery, [g_params, g_files], api_name=False, queue=False)
    demo.queue(max_size=QUEUE_SIZE, default_concurrency_limit=1)
    return demo


def _upload_path(value) -> str | None:
    """The file path of an upload widget's value (Gradio gives a path, or a dict holding one)."""
    if isinstance(value, dict):
        value = value.get("path") or value.get("video") or value.get("name")
        return _upload_path(value)
    return str(value) if value else None


def _names(text: str | None) -> list[str] | None:
    """Comma- or space-separated names from a text box; None when blank (the default)."""
    names = (text or "").replace(",", " ").split()
    return names or None


def _weights(text: str | None, count: int) -> list[float]:
    if not text or not text.strip():
        return [1.0] * count
    try:
        values = [float(v) for v in text.replace(";", ",").split(",") if v.strip()]
    except ValueError:
        raise gr.Error(f"style weights must be numbers separated by commas, got {text!r}") from None
    if len(values) != count:
        raise gr.Error(f"{count} style image(s) but {len(values)} weight(s)")
    return values


def _params_json(records: list[dict]) -> str:
    params = [r["params"] for r in records]
    return json.dumps(params[0] if len(params) == 1 and params[0].get("kind") != "image" else params, indent=2)


def _caption(params: dict) -> str:
    kind = params.get("kind", "")
    if kind == "style":
        return f"style: {', '.join(params.get('content_files', []))} × {params.get('styles', '')}"
    size = f"{params.get('width')}×{params.get('height')}"
    if kind == "video":
        mode = f" ({params['mode']})" if params.get("mode") not in (None, "text-to-video") else ""
        return (f"video{mode} {params.get('frames')} frames {size}, seed {params.get('seed')}: "
                f"{params.get('prompt', '')}")[:120]
    return f"seed {params.get('seed')}, {size}: {params.get('prompt', '')}"[:120]


def _send_to_tab(params_json: str, targets: dict) -> dict:
    """Fill the tab the parameters came from (image, style or video) with the job they record, and switch to it."""
    from gen.jobs import ImageJob, StyleJob, job_from_record
    from gen.style import DEFAULT_GAMMA, gamma_to_strength
    from gen.validation import parse_weighted_path

    try:
        params = json.loads(params_json or "{}")
    except json.JSONDecodeError:
        raise gr.Error("no gen parameters to send") from None
    try:
        job = job_from_record(params)
    except GenError:
        raise gr.Error("these are not gen parameters (drop an image or sidecar made by gen first)") from None
    text = lambda value: "" if value is None else str(value)  # noqa: E731 - optional fields are text boxes
    if isinstance(job, ImageJob):
        values = dict(prompt=job.prompt, negative=job.negative, model=job.model, width=text(job.width),
                      height=text(job.height), steps=text(job.steps), guidance=text(job.guidance), seed=job.seed,
                      entropy=job.entropy_scaling, true_cfg=text(job.true_cfg))
    elif isinstance(job, StyleJob):
        strength = job.strength if job.strength is not None else round(
            gamma_to_strength(DEFAULT_GAMMA if job.gamma is None else job.gamma), 4)
        weights = [job.style_weight(spec) for spec in job.style]
        values = dict(model=job.model, strength=strength, temperature=job.temperature, steps=job.steps,
                      size=text(job.size), preserve=job.preserve_color,
                      weights=", ".join(f"{w:g}" for w in weights) if len(set(weights)) > 1 else "",
                      convention=job.convention, inject_from=text(job.inject_from),
                      layers=", ".join(job.layers or ()))
        gr.Info(f"settings sent; upload the images again: content {', '.join(job.content)}, "
                f"style {', '.join(parse_weighted_path(spec)[0] for spec in job.style)}")
    else:
        values = dict(prompt=job.prompt, model=job.model, frames=job.frames, width=job.width, height=job.height,
                      steps=job.steps, attention=job.attention, dense_layers=text(job.dense_layers),
                      dense_steps=text(job.dense_steps), decay=text(job.decay), granularity=job.mask_granularity,
                      seed=job.seed, strength=text(job.strength))
        uploads = [f"{label_of(field).lower()} {getattr(job, field)}" for field in VIDEO_INPUTS if getattr(job, field)]
        if uploads:
            gr.Info(f"settings sent; upload the inputs again: {', '.join(uploads)}")
    return {targets["tab"]: gr.Tabs(selected=job.kind),
            **{targets[job.kind][name]: value for name, value in values.items()}}


def launch(host: str = "127.0.0.1", port: int = 7860, share: bool = False, model: str | None = None,
           out_dir: str = "outputs/app", device: str | None = None, block: bool = True,
           video_model: str | None = None) -> gr.Blocks:
    """Build and serve the UI (local only unless `share`)."""
    studio = Studio(out_dir, device)
    kwargs = {"image_model": model, "style_model": model} if model else {}
    if video_model:
        kwargs["video_model"] = video_model
    demo = build_app(studio, **kwargs)
    # Gradio serves files from the working and temp folders only; outputs may live elsewhere (--out).
    demo.launch(server_name=host, server_port=port, share=share, max_file_size=UPLOAD_LIMIT,
                allowed_paths=[str(Path(out_dir).resolve())], prevent_thread_lock=not block, show_error=False,
                quiet=not block, ssr_mode=False)
    return demo

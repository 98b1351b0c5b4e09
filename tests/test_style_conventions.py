"""StyleID conventions (gen, original, port), injection steps, layer sets and from_pipe.

`original` and `port` are compared with references written from the authors' code (tests/styleid_reference.py,
float64) on the same tiny-sd weights; `gen` with its own outputs recorded before the conventions existed.
"""

import contextlib
import copy
import hashlib
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import styleid_reference as ref
from gen.errors import GenError
from gen.images import cover_resize, load_image
from gen.inversion import InversionCache, Trajectory, ddim_schedule, inversion_key, inversion_steps
from gen.style import CONVENTIONS, AdaINRule, StyleInjectionProcessor, adain, channel_stats, layer_set
from gen.tiny_models import build_arch_unet
from pipelines import StyleTransferPipeline

CONTENT, STYLE, STYLE2 = "assets/coffee.jpg", "assets/brick.jpg", "assets/gravel.jpg"
BEFORE = Path(__file__).parent / "data" / "style_gen_before.safetensors"


@pytest.fixture(autouse=True)
def assets(monkeypatch, request):
    monkeypatch.chdir(request.config.rootpath)


@pytest.fixture(scope="module")
def style_sd(tiny_sd):
    return StyleTransferPipeline(tiny_sd.model, cache=False)


@pytest.fixture(scope="module")
def style_sd_v():
    from diffusers import DDIMScheduler

    from gen.models import load_pipeline

    model = load_pipeline("tiny-sd", device="cpu")
    model.pipe.scheduler = DDIMScheduler.from_config(model.pipe.scheduler.config, prediction_type="v_prediction")
    return StyleTransferPipeline(model, cache=False)


def _authors_inputs(pipe):
    """What both sides share: the UNet weights (float64 copy), the VAE latents, the empty-prompt embedding."""
    with torch.inference_mode():
        z = [pipe._encode([cover_resize(load_image(path), 64, 64)]).double() for path in (CONTENT, STYLE)]
        tokens = pipe.pipe.tokenizer([""], padding="max_length", max_length=pipe.pipe.tokenizer.model_max_length,
                                     return_tensors="pt")
        cond = pipe.pipe.text_encoder(tokens.input_ids)[0].double()
    return copy.deepcopy(pipe.unet).double(), cond, z[0], z[1]


# ----------------------------------------------------------------------------- against the authors' code


def test_original_convention_reproduces_run_styleid(style_sd, capsys):
    from diffusers import DDIMScheduler

    unet, cond, z_content, z_style = _authors_inputs(style_sd)
    alphas = DDIMScheduler.from_config(style_sd.pipe.scheduler.config).alphas_cumprod
    with torch.inference_mode():
        expected, _ = ref.original(unet, cond, alphas, z_content, z_style, layer_set(unet, "paper"), steps=10)
    original = style_sd(CONTENT, STYLE, num_inference_steps=10, size=64, convention="original").latents
    default = style_sd(CONTENT, STYLE, num_inference_steps=10, size=64).latents
    error, gap = ref.relative(original, expected), ref.relative(default, expected)
    with capsys.disabled():
        print(f"\n[original] vs run_styleid.py reference: relative {error:.1e}; gen's convention: {gap:.1e}")
    assert error < 1e-5  # float32 against float64
    assert gap > 1e-2  # the comparison can fail: another convention is far off


@pytest.mark.parametrize("prediction", ["epsilon", "v_prediction"])
def test_port_convention_reproduces_the_diffusers_port(prediction, style_sd, style_sd_v, capsys):
    from diffusers import DDIMScheduler

    pipe = style_sd if prediction == "epsilon" else style_sd_v
    unet, cond, z_content, z_style = _authors_inputs(pipe)
    scheduler = DDIMScheduler.from_config(pipe.pipe.scheduler.config)
    with torch.inference_mode():
        expected, _ = ref.port(unet, cond, scheduler, z_content, z_style, layer_set(unet, "port"), steps=10,
                               v_prediction=prediction == "v_prediction")
    port = pipe(CONTENT, STYLE, num_inference_steps=10, size=64, convention="port").latents
    default = pipe(CONTENT, STYLE, num_inference_steps=10, size=64).latents
    error, gap = ref.relative(port, expected), ref.relative(default, expected)
    with capsys.disabled():
        print(f"\n[port, {prediction}] vs run_styleid_diffusers.py reference: relative {error:.1e}; "
              f"gen's convention: {gap:.1e}")
    assert error < 1e-5
    assert gap > 1e-2


def test_sd15_layer_sets_are_the_authors_output_blocks():
    unet = build_arch_unet("arch-sd15", device="meta")
    assert layer_set(unet, "paper") == ref.port_layer_names(range(6, 12))  # run_styleid.py --attn_layer 6..11
    assert layer_set(unet, "port") == ref.port_layer_names(range(7, 12))  # the port's injection_layers 7..11


# ----------------------------------------------------------------------------- what each convention does


def _spy(monkeypatch, pipe):
    """Record every UNet call (timestep, input, output) and every injected attention (layer, step)."""
    calls, injected = [], []
    handles = [pipe.unet.register_forward_pre_hook(lambda m, args: calls.append([int(args[1]), args[0].clone()])),
               pipe.unet.register_forward_hook(lambda m, args, out: calls[-1].append(out.sample.clone()))]
    core = StyleInjectionProcessor.core

    def spying_core(self, attn, hidden_states, *args):
        if self.state.inject and self.state.roles and any(r.startswith("gen:") for r in self.state.roles):
            injected.append((self.layer, self.state.step))
        return core(self, attn, hidden_states, *args)

    monkeypatch.setattr(StyleInjectionProcessor, "core", spying_core)
    return calls, injected, handles


@pytest.mark.parametrize("name", ["gen", "original", "port"])
def test_each_convention_runs_the_unet_where_it_says(name, style_sd, monkeypatch):
    steps = 6
    schedule = ddim_schedule(style_sd.pipe.scheduler.config, steps)
    calls, injected, handles = _spy(monkeypatch, style_sd)
    try:
        out = style_sd(CONTENT, STYLE, num_inference_steps=steps, size=64, convention=name, adain_init=False,
                       memory="cache")
    finally:
        for handle in handles:
            handle.remove()
    rules = CONVENTIONS[name]
    inversion, generation = calls[:steps], calls[steps:]
    assert [t for t, *_ in inversion] == list(reversed(schedule.timesteps))
    first = 1 if name == "original" else 0  # the original never runs the first timestep
    assert [t for t, *_ in generation] == list(schedule.timesteps[first:])

    # Inversion evaluation point: each content input follows from the previous call by the convention's step.
    alphas = schedule.alphas_cumprod
    for k, (t, x, e) in enumerate(inversion):
        index = steps - 1 - k
        if name == "original":  # (x_t, t): from level t to the next grid level, the last one to 999
            a_from, a_to = alphas[t], alphas[schedule.timesteps[index - 1] if index else 999]
        else:  # the previous level's latent, labelled t
            a_from, a_to = (schedule.alpha(schedule.previous(index)), alphas[t])
        x, e = x[0].double(), e[0].double()
        moved = math.sqrt(a_to) * (x - math.sqrt(1 - a_from) * e) / math.sqrt(a_from) + math.sqrt(1 - a_to) * e
        following = inversion[k + 1][1][0] if k + 1 < steps else generation[0][1][0]  # no AdaIN: x_T itself
        assert torch.allclose(following.double(), moved, atol=1e-5), (name, t)

    layers = layer_set(style_sd.unet, rules.sd_layers)
    assert out.parameters[0]["layers"] == layers and out.parameters[0]["layer_set"] == rules.sd_layers
    assert sorted({step for _, step in injected}) == list(range(rules.inject_from, steps))
    assert {layer for layer, _ in injected} == set(layers)
    assert out.stats["unet_calls"] == 2 * steps - first


def test_adain_formulas_are_the_authors(capsys):
    g = torch.Generator().manual_seed(3)
    content = torch.randn(1, 4, 8, 8, generator=g, dtype=torch.float64) * 2 + 0.5
    style = torch.randn(1, 4, 8, 8, generator=g, dtype=torch.float64) * 0.7 - 1
    expected = {
        # gen: biased variance + 1e-5 under the root
        "gen": (content - content.mean((2, 3), keepdim=True)) / (content.var((2, 3), unbiased=False, keepdim=True)
                                                                 + 1e-5).sqrt()
        * (style.var((2, 3), unbiased=False, keepdim=True) + 1e-5).sqrt() + style.mean((2, 3), keepdim=True),
        # run_styleid.py adain(): torch.std (unbiased), no epsilon
        "original": (content - content.mean((2, 3), keepdim=True)) / content.std((2, 3), keepdim=True)
        * style.std((2, 3), keepdim=True) + style.mean((2, 3), keepdim=True),
        # run_styleid_diffusers.py: unbiased std, + 1e-4 on the content's only
        "port": (content - content.mean((2, 3), keepdim=True)) / (content.std((2, 3), keepdim=True) + 1e-4)
        * style.std((2, 3), keepdim=True) + style.mean((2, 3), keepdim=True),
    }
    for name, want in expected.items():
        rule = CONVENTIONS[name].adain
        mean, std = channel_stats(style, rule, style=True)
        got = adain(content, mean, std, rule)
        assert torch.allclose(got, want, atol=1e-13, rtol=0), name
    # n vs n - 1 cancels in the ratio of the two spreads: the formulas differ by their epsilons only,
    # which is still a million times the tolerance above.
    for a, b in (("gen", "original"), ("gen", "port"), ("original", "port")):
        assert (expected[a] - expected[b]).abs().max() > 1e-7, (a, b)
    assert AdaINRule() == CONVENTIONS["gen"].adain


def test_gen_convention_is_unchanged(tiny_sd):
    """gen's outputs from before the conventions existed (tests/data, recorded at cb20916), bit for bit."""
    from diffusers import DDIMScheduler
    from safetensors import safe_open

    from gen.models import LoadedModel

    mask = Image.new("L", Image.open(CONTENT).size, 0)
    mask.paste(255, (0, 0, mask.width // 2, mask.height))
    v_pipe = copy.copy(tiny_sd.pipe)
    v_pipe.scheduler = DDIMScheduler.from_config(tiny_sd.pipe.scheduler.config, prediction_type="v_prediction")
    runs = {
        "default50": (tiny_sd.model, dict(style=STYLE, num_inference_steps=50, size=64)),
        "recompute20": (tiny_sd.model, dict(style=STYLE, num_inference_steps=20, size=64, memory="recompute")),
        "blend_mask12": (tiny_sd.model, dict(style=[(STYLE, 0.7), (STYLE2, 0.3)], num_inference_steps=12, size=96,
                                             mask=mask, preserve_colors=True)),
        "vpred20": (LoadedModel(v_pipe, tiny_sd.model.preset, tiny_sd.model.device, tiny_sd.model.dtype),
                    dict(style=STYLE, num_inference_steps=20, size=64)),
    }
    with safe_open(str(BEFORE), "pt") as before:
        digests = json.loads(before.metadata()["image_sha256"])
        for name, (model, kwargs) in runs.items():
            out = StyleTransferPipeline(model, cache=False)(CONTENT, **kwargs)
            assert torch.equal(out.latents, before.get_tensor(name)), name
            assert hashlib.sha256(np.asarray(out.images[0]).tobytes()).hexdigest() == digests[name], name


# ----------------------------------------------------------------------------- injection steps


def test_inject_from_leaves_the_earlier_steps_alone(style_sd, monkeypatch):
    steps, start = 8, 5
    calls, injected, handles = _spy(monkeypatch, style_sd)
    try:
        style_sd(CONTENT, STYLE, num_inference_steps=steps, size=64, injection=False)
        plain_outputs = [e for _, _, e in calls[steps:]]
        calls.clear()
        late = style_sd(CONTENT, STYLE, num_inference_steps=steps, size=64, inject_from=start, memory="cache")
        late_outputs = [e for _, _, e in calls[steps:]]
        late_injected = sorted({step for _, step in injected})
    finally:
        for handle in handles:
            handle.remove()
    default = style_sd(CONTENT, STYLE, num_inference_steps=steps, size=64, memory="cache")
    assert all(torch.equal(a, b) for a, b in zip(plain_outputs[:start], late_outputs[:start]))
    assert not torch.allclose(plain_outputs[start], late_outputs[start], atol=1e-6)
    assert late_injected == list(range(start, steps))
    assert late.parameters[0]["inject_from"] == start and default.parameters[0]["inject_from"] == 1
    # Only the injected steps' features are kept: (steps - start) of them instead of (steps - 1).
    assert late.stats["feature_bytes"] * (steps - 1) == default.stats["feature_bytes"] * (steps - start)


BAD = [
    (dict(inject_from=8), "inject_from must be a whole step number from 0 to 7, got 8"),
    (dict(inject_from=-1), "inject_from must be a whole step number from 0 to 7"),
    (dict(inject_from=2.5), "inject_from must be a whole step number"),
    (dict(inject_from=True), "inject_from must be a whole step number"),
    (dict(inject_from=0, convention="original"), "from 1 to 7 (the original convention never runs step 0)"),
    (dict(convention="paper"), "convention must be one of gen, original, port, got 'paper'"),
    (dict(layers="instantstyle"), "layer set 'instantstyle' is up_blocks.0.attentions.1 of SDXL's UNet"),
    (dict(layers=["nonsense"]), "layers: 'nonsense' is neither a layer set (paper, port, all-blocks, instantstyle, "
                                "vsp) nor a layer name"),
    (dict(layers=["up_blocks.9.attn1"]), "unknown attention layer 'up_blocks.9.attn1'; .* layer sets are paper"),
]


@pytest.mark.parametrize("kwargs,message", BAD, ids=[m for _, m in BAD])
def test_bad_convention_settings_are_specific_errors(style_sd, kwargs, message):
    with pytest.raises(GenError, match=message.replace("(", r"\(").replace(")", r"\)")):
        style_sd(CONTENT, STYLE, num_inference_steps=8, size=64, **kwargs)


def test_original_convention_needs_two_steps(style_sd):
    with pytest.raises(GenError, match="steps must be at least 2 under the original convention"):
        style_sd(CONTENT, STYLE, num_inference_steps=1, size=64, convention="original")


# ----------------------------------------------------------------------------- layer sets


SDXL_SETS = {
    "paper": [f"up_blocks.{i}.attentions.{j}.transformer_blocks.0.attn1" for i in (0, 1) for j in range(3)],
    "port": [f"up_blocks.{i}.attentions.{j}.transformer_blocks.0.attn1" for i in (0, 1) for j in range(3)][1:],
    "all-blocks": [f"up_blocks.0.attentions.{j}.transformer_blocks.{k}.attn1" for j in range(3) for k in range(10)]
    + [f"up_blocks.1.attentions.{j}.transformer_blocks.{k}.attn1" for j in range(3) for k in range(2)],
    "instantstyle": [f"up_blocks.0.attentions.1.transformer_blocks.{k}.attn1" for k in range(10)],
    "vsp": [f"up_blocks.1.attentions.{j}.transformer_blocks.{k}.attn1" for j in range(3) for k in range(2)],
}


def test_sdxl_layer_sets_resolve_on_the_real_architecture():
    from gen.attention import attention_layers
    from gen.style import default_injection_layers

    unet = build_arch_unet("arch-sdxl", device="meta")
    known = attention_layers(unet)
    for name, expected in SDXL_SETS.items():
        assert layer_set(unet, name) == expected, name
        assert all(layer in known for layer in expected)
    for convention in CONVENTIONS:  # the authors published no SDXL layers: every convention uses vsp there
        assert default_injection_layers(unet, convention) == SDXL_SETS["vsp"]


def test_layers_take_set_names_patterns_and_names_together(style_sd):
    unet = style_sd.unet
    out = style_sd(CONTENT, STYLE, num_inference_steps=3, size=64, layers="vsp")
    assert out.parameters[0]["layers"] == layer_set(unet, "vsp") and out.parameters[0]["layer_set"] == "vsp"
    extra = "up_blocks.1.attentions.0.transformer_blocks.0.attn1"
    mixed = style_sd(CONTENT, STYLE, num_inference_steps=3, size=64, layers=["vsp", extra])
    assert mixed.parameters[0]["layers"] == layer_set(unet, "vsp") + [extra]
    assert mixed.parameters[0]["layer_set"] is None


# ----------------------------------------------------------------------------- inversion rules and the cache


def test_inversion_rules_walk_their_own_levels(tiny_sd):
    schedule = ddim_schedule(tiny_sd.pipe.scheduler.config, 50)
    alphas = schedule.alphas_cumprod
    gen, original, port = (inversion_steps(schedule, rule) for rule in ("gen", "original", "port"))
    assert [s.index for s in gen] == list(range(49, -1, -1))
    assert (gen[0].alpha_from, gen[0].alpha_to) == (schedule.final_alpha, alphas[1])
    assert (original[0].alpha_from, original[0].alpha_to) == (alphas[1], alphas[21])
    assert (original[-1].alpha_from, original[-1].alpha_to) == (alphas[981], alphas[999])
    assert [(s.alpha_from, s.alpha_to) for s in port] == [(alphas[max(0, t - 20)], alphas[t])
                                                         for t in reversed(schedule.timesteps)]
    assert all(s.alpha_v == s.alpha_to for s in gen) and all(s.alpha_v == s.alpha_from for s in port)


def test_a_trajectory_keeps_its_rule_through_the_cache(tmp_path):
    cache = InversionCache(tmp_path)
    trajectory = Trajectory((9, 5, 1), torch.randn(3, 4, 8, 8), torch.randn(4, 8, 8), "original")
    cache.put("abc", trajectory)
    loaded = cache.get("abc")
    assert loaded.rule == "original" and torch.equal(loaded.latent_after(0), trajectory.inputs[1])
    assert torch.equal(loaded.latent_after(2), trajectory.inputs[2])
    keys = {rule: inversion_key("img", "model", 50, 64, 64, "fp32", "cpu", rule) for rule in ("gen", "original", "port")}
    assert len(set(keys.values())) == 3
    assert keys["gen"] == inversion_key("img", "model", 50, 64, 64, "fp32", "cpu")  # gen's keys predate rules


@pytest.mark.parametrize("name", ["original", "port"])
def test_conventions_work_with_masks_and_the_low_memory_mode(name, style_sd):
    mask = Image.new("L", Image.open(CONTENT).size, 0)
    mask.paste(255, (0, 0, mask.width // 2, mask.height))
    cached = style_sd(CONTENT, STYLE, num_inference_steps=6, size=96, mask=mask, convention=name, memory="cache")
    low = style_sd(CONTENT, STYLE, num_inference_steps=6, size=96, mask=mask, convention=name, memory="recompute")
    content = np.asarray(cover_resize(load_image(CONTENT), 96, 64))
    assert np.array_equal(np.asarray(cached.images[0])[:, 60:], content[:, 60:])
    assert (cached.latents - low.latents).abs().max().item() < 1e-4


# ----------------------------------------------------------------------------- the tiny SDXL preset and from_pipe


def test_sdxl_presets_schedule_ends_at_alpha_zero(tiny_sdxl):
    from gen.tiny_models import build_arch_pipeline

    for config in (tiny_sdxl.pipe.scheduler.config, build_arch_pipeline("arch-sdxl", device="meta").scheduler.config):
        schedule = ddim_schedule(config, 10)
        assert not config["set_alpha_to_one"] and schedule.final_alpha == schedule.alphas_cumprod[0] < 1.0


def test_from_pipe_uses_the_loaded_pipeline_and_only_reads_its_scheduler(tiny_sd):
    from diffusers import DPMSolverMultistepScheduler

    from gen.models import LoadedModel

    user = copy.copy(tiny_sd.pipe)  # the same components, as the user loaded them
    user.scheduler = DPMSolverMultistepScheduler.from_config(tiny_sd.pipe.scheduler.config)
    config_before = dict(user.scheduler.config)
    styled = StyleTransferPipeline.from_pipe(user, cache=False)
    assert styled.pipe is user and styled.unet is tiny_sd.pipe.unet and styled.model.preset.family == "sd"
    out = styled(CONTENT, STYLE, num_inference_steps=6, size=64)
    assert isinstance(user.scheduler, DPMSolverMultistepScheduler) and dict(user.scheduler.config) == config_before
    direct = StyleTransferPipeline(LoadedModel(user, tiny_sd.model.preset, tiny_sd.model.device, tiny_sd.model.dtype),
                                   cache=False)(CONTENT, STYLE, num_inference_steps=6, size=64)
    assert torch.equal(out.latents, direct.latents)
    assert StyleTransferPipeline.from_pipe(tiny_sd, cache=False).model is tiny_sd.model  # gen's own pipelines too


def test_from_pipe_knows_sdxl_and_refuses_what_is_not_a_pipeline(tiny_sdxl):
    styled = StyleTransferPipeline.from_pipe(tiny_sdxl.pipe, cache=False)
    assert styled.model.preset.family == "sdxl" and styled.model.train_size == tiny_sdxl.model.train_size
    with pytest.raises(GenError, match="a UNet2DConditionModel cannot be wrapped: gen needs a Stable Diffusion"):
        StyleTransferPipeline.from_pipe(tiny_sdxl.pipe.unet)


# ----------------------------------------------------------------------------- the command line, job files, records


def test_command_line_takes_the_convention_the_first_injected_step_and_a_layer_set(tmp_path, capsys):
    from gen.cli import main
    from gen.jobs import StyleJob, job_from_record
    from gen.metadata import read_png_metadata

    out = tmp_path / "o.png"
    code = main(["style", "--content", CONTENT, "--style", STYLE, "--steps", "4", "--size", "64", "--device", "cpu",
                 "--convention", "original", "--inject-from", "2", "--layers", "vsp", "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    text, params = read_png_metadata(out)
    assert (params["convention"], params["inject_from"], params["layer_set"]) == ("original", 2, "vsp")
    assert "StyleID convention: original, Inject from step: 2, Layer set: vsp" in text
    job = job_from_record(params)
    assert isinstance(job, StyleJob)
    assert (job.convention, job.inject_from, job.layers) == ("original", 2, ("vsp",))


BAD_FLAGS = [
    (["--convention", "original", "--inject-from", "0"],
     "--inject-from must be a whole step number from 1 to 3 (the original convention never runs step 0), got 0"),
    (["--inject-from", "4"], "--inject-from must be a whole step number from 0 to 3, got 4"),
    (["--convention", "original", "--steps", "1"], "--steps must be at least 2 under the original convention"),
    (["--layers", "vps"], "--layers: 'vps' is neither a layer set (paper, port, all-blocks, instantstyle, vsp)"),
    (["--convention", "paper"], "argument --convention: invalid choice: 'paper'"),
]


@pytest.mark.parametrize("extra,message", BAD_FLAGS, ids=[m for _, m in BAD_FLAGS])
def test_bad_convention_flags_are_one_line_before_any_model_loads(extra, message, tmp_path, capsys, monkeypatch):
    import gen.jobs
    from gen.cli import main

    def no_loading(plan):
        raise AssertionError("a model was loaded for a bad job")

    monkeypatch.setattr(gen.jobs, "load_pipeline_for", no_loading)
    argv = ["style", "--content", CONTENT, "--style", STYLE, "--steps", "4", "--device", "cpu",
            "--out", str(tmp_path / "o.png"), *extra]
    with pytest.raises(SystemExit) if "invalid choice" in message else contextlib.nullcontext():
        assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not list(tmp_path.iterdir())


def test_job_files_carry_the_new_fields_as_text_and_name_bad_ones():
    from gen.errors import FieldError
    from gen.jobs import StyleJob
    from gen.style import DEFAULT_CONVENTION

    layer = "up_blocks.1.attentions.0.transformer_blocks.0.attn1"
    job = StyleJob.from_dict({"kind": "style", "content": "a.jpg", "style": "b.jpg", "convention": "port",
                              "inject_from": "3", "layers": f"vsp|{layer}"}, text=True)
    job.check()
    assert (job.convention, job.inject_from, job.layers) == ("port", 3, ("vsp", layer))
    assert StyleJob.from_dict(job.to_dict()) == job
    assert StyleJob(content=("a",), style=("b",)).convention == DEFAULT_CONVENTION
    with pytest.raises(FieldError) as bad:
        StyleJob(content=("a.jpg",), style=("b.jpg",), inject_from=50).check()
    assert bad.value.field == "inject_from" and "from 0 to 49" in str(bad.value)
    with pytest.raises(FieldError) as bad:
        StyleJob(content=("a.jpg",), style=("b.jpg",), convention="ldm").check()
    assert bad.value.field == "convention"


def test_a_record_sends_its_convention_and_layer_set_back_to_the_style_tab():
    from app.ui import _send_to_tab

    names = ("model", "strength", "temperature", "steps", "size", "preserve", "weights", "convention", "inject_from",
             "layers")
    targets = {"tab": "tabs", "style": {name: f"style.{name}" for name in names}}
    params = {"kind": "style", "model": "tiny-sd", "content_files": ["c.jpg"], "style_files": ["s.jpg"],
              "style_weights": [1.0], "gamma": 0.75, "strength": None, "temperature": 1.5, "steps": 20,
              "width": 64, "height": 64, "convention": "port", "inject_from": 0, "layer_set": "instantstyle",
              "layers": [f"up_blocks.0.attentions.1.transformer_blocks.{k}.attn1" for k in range(10)]}
    sent = _send_to_tab(json.dumps(params), targets)
    assert (sent["style.convention"], sent["style.inject_from"], sent["style.layers"]) == ("port", "0", "instantstyle")
    older = dict(params, layer_set=None, convention=None, inject_from=None)  # records from before issue 15
    older = {k: v for k, v in older.items() if v is not None}
    sent = _send_to_tab(json.dumps(older), targets)
    assert sent["style.convention"] == "gen" and sent["style.inject_from"] == ""
    assert sent["style.layers"] == ", ".join(params["layers"])

"""Entropy scaling on diffusion transformers (FLUX.1, SD3.5, Qwen-Image) through the stock processors:
identity at the training size, the scale each kernel call used against a float64 reference (joint
text + image attention included), any dispatcher backend, exact restoration, two pipelines at once."""

import contextlib
import copy
import math
import threading

import numpy as np
import pytest
import torch
from torch.overrides import TorchFunctionMode

from gen.attention import attention_layers, entropy_scaling
from gen.attention.entropy import image_token_count, joint_entropy_factor
from gen.attention.processors import check_dispatcher_backend, dispatcher_backend
from gen.attention.scale_gates import _GATES, scaled_softmax
from gen.errors import BackendUnavailable, GenError

PROMPT = "a lighthouse on a cliff at dusk"
DITS = ["tiny_flux", "tiny_sd3", "tiny_qwen_image"]
SDPA = torch._C._nn.scaled_dot_product_attention  # what torch.nn.functional's name stands for
SDPA_ARGS = ("query", "key", "value", "attn_mask", "dropout_p", "is_causal", "scale")


def test_joint_factor_keeps_text_keys_and_swaps_image_tokens():
    # 512 text keys + 45 image tokens now; 64 image tokens at the training size.
    assert joint_entropy_factor(557, 45, 64) == pytest.approx(math.sqrt(math.log(557) / math.log(576)))
    assert joint_entropy_factor(45, 45, 64) == pytest.approx(math.sqrt(math.log(45) / math.log(64)))  # image only
    assert joint_entropy_factor(576, 64, 64) == 1.0
    assert joint_entropy_factor(20, 45, 64) == 1.0  # keys that are not the image's: untouched
    assert image_token_count(torch.zeros(2, 4, 18, 10), patch_size=2) == 45  # SD3: patched inside
    assert image_token_count(torch.zeros(1, 45, 64), patch_size=2) == 45  # Flux/Qwen: packed already


@pytest.mark.parametrize("fixture", DITS)
def test_training_size_is_pixel_identical_to_off(fixture, request):
    pipe = request.getfixturevalue(fixture)
    images = {mode: np.asarray(pipe(PROMPT, seed=3, entropy_scaling=mode).images[0]) for mode in ("off", "on", "auto")}
    assert images["off"].shape == (128, 128, 3)
    # "on" runs every attention layer through gen's wrapper and gates; at the training size the factor is 1.
    assert np.array_equal(images["on"], images["off"]) and np.array_equal(images["auto"], images["off"])


class KernelCalls(TorchFunctionMode):
    """Every torch SDPA call made inside a transformer forward: its inputs, the scale it got, its output."""

    def __init__(self, transformer):
        super().__init__()
        self.calls, self.forwards, self.inside = [], 0, False
        self.hooks = [transformer.register_forward_pre_hook(lambda *_: self._enter()),
                      transformer.register_forward_hook(lambda *_: setattr(self, "inside", False))]

    def _enter(self):
        self.inside, self.forwards = True, self.forwards + 1

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if func is SDPA and self.inside:
            named = dict(zip(SDPA_ARGS, args)) | kwargs
            self.calls.append({k: named.get(k) for k in ("query", "key", "value", "attn_mask", "scale")} | {"out": out})
        return out


def reference_attention(q, k, v, mask, scale):
    scores = q @ k.transpose(-1, -2) * scale
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf")) if mask.dtype == torch.bool else scores + mask
    return torch.softmax(scores, dim=-1) @ v


@pytest.mark.parametrize("fixture", DITS)
def test_each_kernel_call_uses_the_formula_scale_against_float64_reference(fixture, request):
    from pipelines import TextToImagePipeline

    stock = copy.deepcopy(request.getfixturevalue(fixture).pipe).to(torch.float64)
    pipe = TextToImagePipeline.from_pipe(stock)  # a stock diffusers pipeline, wrapped as it is
    assert pipe.model.preset.train_size == 128
    transformer = stock.transformer
    image_now, image_train = 9 * 5, 8 * 8  # 144x80 and 128x128 pixels, 16 pixels per token side
    capture = KernelCalls(transformer)
    with capture:
        pipe(PROMPT, width=144, height=80, num_inference_steps=2, seed=0, entropy_scaling="on")
    for hook in capture.hooks:
        hook.remove()

    layers = attention_layers(transformer)
    assert len(capture.calls) == len(layers) * capture.forwards > 0  # every layer, every transformer call
    joint = [c for c in capture.calls if c["key"].shape[-2] > image_now]
    assert joint, "no joint text + image attention was checked"
    for call in capture.calls:
        q, k, v = call["query"], call["key"], call["value"]
        assert q.dtype == torch.float64
        keys, head_dim = k.shape[-2], q.shape[-1]
        expected = head_dim**-0.5 * math.sqrt(math.log(keys) / math.log(keys - image_now + image_train))
        out = call["out"]
        assert torch.allclose(out, reference_attention(q, k, v, call["attn_mask"], expected), atol=1e-12, rtol=0)
        # The stock 1/sqrt(d) must not match, or the check above would prove nothing.
        assert not torch.allclose(out, reference_attention(q, k, v, call["attn_mask"], head_dim**-0.5), atol=1e-6)


def flux_inputs(image_tokens=45, text_tokens=20, seed=0):
    g = torch.Generator().manual_seed(seed)
    return dict(hidden_states=torch.randn(1, image_tokens, 16, generator=g),
                encoder_hidden_states=torch.randn(1, text_tokens, 32, generator=g),
                pooled_projections=torch.randn(1, 32, generator=g), timestep=torch.tensor([0.5]),
                img_ids=torch.rand(image_tokens, 3, generator=g) * 8, txt_ids=torch.zeros(text_tokens, 3),
                guidance=torch.tensor([3.5]))


def test_stock_processors_and_kernel_entry_points_are_restored_exactly(tiny_flux, tiny_sd3):
    import diffusers.models.transformers.transformer_flux as flux_module
    from diffusers.models.attention_dispatch import dispatch_attention_fn

    # Flux's processors reach the kernel through diffusers' dispatcher, SD3's through torch SDPA.
    gated = {"flux": lambda: flux_module.dispatch_attention_fn is not dispatch_attention_fn,
             "sd3": lambda: torch.nn.functional.scaled_dot_product_attention is not SDPA}
    for family, transformer in (("flux", tiny_flux.pipe.transformer), ("sd3", tiny_sd3.pipe.transformer)):
        before = {name: module.processor for name, module in attention_layers(transformer).items()}
        with entropy_scaling(transformer, train_size=128) as changed:
            assert sorted(changed) == sorted(before)
            assert all(m.processor is not before[n] for n, m in attention_layers(transformer).items())
            assert gated[family]()
        assert all(m.processor is before[n] for n, m in attention_layers(transformer).items())
        assert not transformer._forward_pre_hooks
    assert flux_module.dispatch_attention_fn is dispatch_attention_fn
    assert torch.nn.functional.scaled_dot_product_attention is SDPA
    assert not _GATES


def test_any_dispatcher_backend_gets_the_scale(tiny_flux):
    from diffusers.models.attention_dispatch import _AttentionBackendRegistry

    transformer, inputs = tiny_flux.pipe.transformer, flux_inputs()
    active = _AttentionBackendRegistry.get_active_backend()[0]
    with torch.no_grad():
        stock = transformer(**inputs).sample
        with entropy_scaling(transformer, train_size=128):
            scaled = transformer(**inputs).sample
        # FlexAttention never goes through torch's SDPA: only the dispatcher's scale= can reach it.
        with dispatcher_backend(transformer, "flex"):
            with entropy_scaling(transformer, train_size=128):
                flex_scaled = transformer(**inputs).sample
            # This model only: diffusers' process-wide active backend (other models' default) is untouched.
            assert _AttentionBackendRegistry.get_active_backend()[0] == active
        assert all("_attention_backend" not in m.processor.__dict__ for m in attention_layers(transformer).values())
    assert torch.allclose(flex_scaled, scaled, atol=1e-5) and not torch.allclose(scaled, stock, atol=1e-4)


def test_sd3_processors_cannot_take_a_dispatcher_backend(tiny_sd3):
    with pytest.raises(BackendUnavailable, match="call torch's SDPA directly"):
        check_dispatcher_backend(tiny_sd3.pipe.transformer, "xformers")


def test_two_pipelines_at_once_each_get_their_own_scaling(tiny_flux):
    """One transformer scaled in one thread, another unscaled in a second thread, in lockstep: each output
    equals the same run done alone."""
    scaled_model, plain_model = tiny_flux.pipe.transformer, copy.deepcopy(tiny_flux.pipe.transformer)
    inputs = [flux_inputs(seed=s) for s in range(3)]

    def run(model, scaled, barrier=None):
        outs = []
        with torch.no_grad(), entropy_scaling(model, train_size=128) if scaled else contextlib.nullcontext():
            for x in inputs:
                if barrier is not None:
                    barrier.wait(timeout=60)
                outs.append(model(**x).sample)
        return outs

    alone = {"scaled": run(scaled_model, True), "plain": run(plain_model, False)}
    together, barrier = {}, threading.Barrier(2)
    threads = [threading.Thread(target=lambda: together.__setitem__("scaled", run(scaled_model, True, barrier))),
               threading.Thread(target=lambda: together.__setitem__("plain", run(plain_model, False, barrier)))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    for kind in ("scaled", "plain"):
        assert all(torch.equal(a, b) for a, b in zip(alone[kind], together[kind], strict=True)), kind
    assert not torch.allclose(alone["scaled"][0], alone["plain"][0], atol=1e-4)
    assert not _GATES


def test_a_processor_that_reaches_no_kernel_is_an_error(tiny_flux):
    class HandWritten:  # computes attention by hand: no entry point gen can scale
        def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, image_rotary_emb=None):
            return hidden_states if encoder_hidden_states is None else (hidden_states, encoder_hidden_states)

    transformer = copy.deepcopy(tiny_flux.pipe.transformer)
    layer = transformer.single_transformer_blocks[0].attn
    layer.set_processor(HandWritten())
    with torch.no_grad(), pytest.raises(RuntimeError, match="HandWritten on .* reached neither"):
        with scaled_softmax(transformer, lambda keys: 1.0, {"single_transformer_blocks.0.attn": layer}):
            transformer(**flux_inputs())


def test_context_parallel_processors_are_refused_and_nothing_is_installed(tiny_flux):
    transformer = copy.deepcopy(tiny_flux.pipe.transformer)
    layers = attention_layers(transformer)
    last = list(layers.values())[-1]
    last.processor._parallel_config = object()
    before = {name: module.processor for name, module in layers.items()}
    with pytest.raises(GenError, match="context parallelism"):
        with entropy_scaling(transformer, train_size=128):
            pass
    assert all(m.processor is before[n] for n, m in layers.items()) and not _GATES

"""Radial attention on the video transformers of diffusers (Wan, HunyuanVideo, HunyuanVideo 1.5).

Shaped like diffusers' hooks: a frozen `RadialConfig` (the method's settings), a per-call
`RadialState` with `reset()` (the denoising step and the token layout of the transformer call in
progress) and `RadialStats` (counters), shared by every radial processor of one pipeline. A
`ModelHook` on each transformer, registered by name through diffusers' `HookRegistry`, records
the layout from the call's latent shape and reads the step from a clock (for a pipeline: its
`current_timestep` within its `scheduler.timesteps`; the pipeline's step callback stays free).

A processor runs the stock processor, untouched, in the first `dense_layers` blocks, the first
`dense_steps` steps and the last `dense_final_steps` steps; elsewhere it runs the stock
projections and swaps only the attention op for the radial kernel (`RadialProcessor.attend`, on
(batch, tokens, heads, head_dim) like `dispatch_attention_fn`). Where the projections must be
re-run outside the stock processor, there is one copy per family, tested against the stock one:

* Wan (`WanRadialProcessor`): self-attention (`attn1`) only. Cross-attention keeps the stock
  processor, with the image-to-video branch (CLIP features through `add_k_proj`/`add_v_proj`);
  image-to-video latents are joined on the channel axis, so the token layout is the text-to-video one.
* HunyuanVideo, HunyuanVideo-I2V and HunyuanVideo 1.5 (`HunyuanRadialProcessor`): the joint
  attention of the double- (and single-) stream blocks. Text tokens (for I2V with the image's
  tokens, for 1.5 image + ByT5 + MLLM tokens, valid ones first) follow the video tokens: their
  rows and columns are dense, and the padding the stock attention mask hides is hidden, per row.

    with radial_attention(pipe, decay=0.2, dense_layers=1, dense_steps=12) as radial:
        video = pipe(prompt, num_frames=81).frames[0]
    print(radial.stats.radial_calls)

One video on several GPUs (`enable_context_parallel`, once, under torch.distributed): diffusers' Ulysses
context parallelism shards the sequence by the model's plan (gen's for HunyuanVideo, which diffusers lacks)
and the radial op runs inside the all-to-alls of `gen.attention.ulysses`, on the whole sequence for 1/N of
the heads; the layout is the global one (the hook reads the unsharded latents before the plan splits them).
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import torch

from gen.attention.kernels import dense_attention
from gen.attention.radial import GRANULARITIES, VideoLayout, radial_sparse_attention, reference_radial_attention
from gen.attention.ulysses import AttentionOp, cp_plan_for, global_tokens, head_divisors, ulysses_attention

KERNELS = ("flex", "reference")  # reference: SDPA with the boolean mask (slow; for tests and checks)
HOOK_NAME = "gen_radial_attention"
Clock = Callable[[], "tuple[int, int | None] | None"]  # (step, total steps) of the call in progress


@dataclass(frozen=True)
class RadialConfig:
    """What radial attention does: the band decay, the mask granularity and the dense warm-up."""

    decay: float = 0.2
    granularity: str = "block"
    dense_layers: int = 1
    dense_steps: int = 12
    dense_final_steps: int = 0
    kernel: str = "flex"

    def __post_init__(self):
        if self.granularity not in GRANULARITIES:
            raise ValueError(f"granularity must be one of {GRANULARITIES}, got {self.granularity!r}")
        if self.kernel not in KERNELS:
            raise ValueError(f"kernel must be one of {KERNELS}, got {self.kernel!r}")
        if min(self.dense_layers, self.dense_steps, self.dense_final_steps) < 0 or not self.decay > 0:
            raise ValueError(f"dense layers/steps must be >= 0 and decay > 0, got {self}")


def runs_dense(config: RadialConfig, block: int, step: int, total_steps: int | None) -> bool:
    """Dense warm-up: the first blocks, the first steps and (when the total is known) the last steps."""
    final = total_steps is not None and config.dense_final_steps > 0 and step >= total_steps - config.dense_final_steps
    return block < config.dense_layers or step < config.dense_steps or final


@dataclass
class RadialState:
    """Where the call in progress is: its denoising step and the video layout of the transformer call."""

    step: int = 0
    total_steps: int | None = None
    layout: VideoLayout | None = None  # video tokens only; processors add the text tokens they see

    def reset(self) -> None:
        self.step, self.total_steps, self.layout = 0, None, None


@dataclass
class RadialStats:
    """Counters of self-attention calls and the layouts radial calls saw (text tokens included); with `trace` a
    list, (step, block, "dense" | "radial") per call."""

    radial_calls: int = 0
    dense_calls: int = 0
    layouts: set = field(default_factory=set)
    trace: list | None = None

    def note(self, step: int, block: int, layout: VideoLayout | None) -> None:
        if layout is None:
            self.dense_calls += 1
        else:
            self.radial_calls += 1
            self.layouts.add(dataclasses.replace(layout, key_limit=None))
        if self.trace is not None:
            self.trace.append((step, block, "dense" if layout is None else "radial"))


@dataclass
class RadialRun:
    """What the processors and hooks of one installation share."""

    config: RadialConfig
    state: RadialState = field(default_factory=RadialState)
    stats: RadialStats = field(default_factory=RadialStats)


# ----------------------------------------------------------------------------- processors


class RadialProcessor:
    """The part every family shares: dense or radial for this call, and the radial attention op."""

    def __init__(self, stock, block: int, run: RadialRun, flavour: str):
        self.stock, self.block, self.run, self.flavour = stock, block, run, flavour

    def radial_layout(self, applicable: bool = True, text_tokens: int = 0) -> VideoLayout | None:
        """The layout (video, then `text_tokens`) when this call runs radial; None when it runs the stock
        (dense) processor."""
        state, config = self.run.state, self.run.config
        radial = applicable and state.layout is not None and not runs_dense(config, self.block, state.step,
                                                                             state.total_steps)
        layout = dataclasses.replace(state.layout, text_tokens=text_tokens) if radial else None
        self.run.stats.note(state.step, self.block, layout)
        return layout

    def attend(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, layout: VideoLayout) -> torch.Tensor:
        """Radial attention of (batch, tokens, heads, head_dim) tensors, as `dispatch_attention_fn` takes them."""
        config = self.run.config
        kernel = radial_sparse_attention if config.kernel == "flex" else reference_radial_attention
        out = kernel(query.transpose(1, 2), key.transpose(1, 2), value.transpose(1, 2), layout, config.granularity)
        return out.transpose(1, 2)

    @property
    def parallel_config(self):
        """diffusers' ParallelConfig when the transformer runs context-parallel (set on the processor it wraps)."""
        return getattr(self.stock, "_parallel_config", None)

    def across_ranks(self, op: AttentionOp, query, key, value, text_tokens: int = 0) -> torch.Tensor:
        """`op` on the whole sequence: directly, or under context parallelism inside Ulysses all-to-alls."""
        config = self.parallel_config
        if config is None:
            return op(query, key, value)
        return ulysses_attention(query, key, value, op, config, text_tokens)


def apply_rotary(hidden_states: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Wan's rotary embedding on (batch, tokens, heads, head_dim) with interleaved pairs (a nested function
    inside the stock processor, so it cannot be imported)."""
    x1, x2 = hidden_states.unflatten(-1, (-1, 2)).unbind(-1)
    cos, sin = cos[..., 0::2], sin[..., 1::2]
    out = torch.empty_like(hidden_states)
    out[..., 0::2] = x1 * cos - x2 * sin
    out[..., 1::2] = x1 * sin + x2 * cos
    return out.type_as(hidden_states)


class WanRadialProcessor(RadialProcessor):
    """`WanAttnProcessor` for self-attention with the radial op; dense calls go to the stock processor."""

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, rotary_emb=None,
                 **kwargs):
        from diffusers.models.transformers.transformer_wan import _get_qkv_projections

        layout = self.radial_layout(encoder_hidden_states is None and attention_mask is None)
        if layout is None:
            return self.stock(attn, hidden_states, encoder_hidden_states, attention_mask, rotary_emb, **kwargs)
        query, key, value = _get_qkv_projections(attn, hidden_states, None)
        query, key = attn.norm_q(query), attn.norm_k(key)
        query, key, value = (x.unflatten(2, (attn.heads, -1)) for x in (query, key, value))
        if rotary_emb is not None:
            query, key = apply_rotary(query, *rotary_emb), apply_rotary(key, *rotary_emb)
        out = self.across_ranks(lambda q, k, v: self.attend(q, k, v, layout), query, key, value)
        return attn.to_out[1](attn.to_out[0](out.flatten(2, 3).type_as(query)))


def visible_keys(attention_mask: torch.Tensor | None, row: int, total: int) -> int | None:
    """Keys the stock mask leaves visible to batch row `row`: HunyuanVideo's (B, 1, 1, N) and 1.5's (B, text)
    masks both hide padding at the end of the sequence. None when nothing is hidden."""
    if attention_mask is None:
        return None
    keep = attention_mask[row].reshape(-1).bool()
    hidden = int((~keep).sum())
    if hidden and bool(keep[-hidden:].any()):
        raise ValueError("radial attention expects the text padding at the end of the sequence")
    return total - hidden if hidden else None


def hunyuan_projections(attn, hidden_states, encoder_hidden_states, image_rotary_emb):
    """HunyuanVideo's (1.0, I2V, 1.5) joint query, key and value, (batch, video + text tokens, heads, head_dim):
    the stock processors' projections, norms and rotary embedding (on the video tokens only), in their order."""
    from diffusers.models.embeddings import apply_rotary_emb

    text = encoder_hidden_states.shape[1]
    single_stream = attn.add_q_proj is None
    if single_stream:
        hidden_states = torch.cat([hidden_states, encoder_hidden_states], dim=1)
    query, key, value = (f(hidden_states).unflatten(2, (attn.heads, -1)) for f in (attn.to_q, attn.to_k, attn.to_v))
    if attn.norm_q is not None:
        query = attn.norm_q(query)
    if attn.norm_k is not None:
        key = attn.norm_k(key)
    if image_rotary_emb is not None:  # positions of the video tokens only
        video = query.shape[1] - text if single_stream else query.shape[1]
        query = torch.cat([apply_rotary_emb(query[:, :video], image_rotary_emb, sequence_dim=1),
                           query[:, video:]], dim=1)
        key = torch.cat([apply_rotary_emb(key[:, :video], image_rotary_emb, sequence_dim=1), key[:, video:]], dim=1)
    if not single_stream:
        added = [f(encoder_hidden_states).unflatten(2, (attn.heads, -1))
                 for f in (attn.add_q_proj, attn.add_k_proj, attn.add_v_proj)]
        if attn.norm_added_q is not None:
            added[0] = attn.norm_added_q(added[0])
        if attn.norm_added_k is not None:
            added[1] = attn.norm_added_k(added[1])
        query, key, value = (torch.cat([x, a], dim=1) for x, a in zip((query, key, value), added))
    return query, key, value


def hunyuan_outputs(attn, out: torch.Tensor, text: int, dtype: torch.dtype):
    """The stock processors' output projections of a joint attention output: (video tokens, text tokens)."""
    out = out.flatten(2, 3).to(dtype)
    out, encoder_out = out[:, :-text], out[:, -text:]
    if getattr(attn, "to_out", None) is not None:
        out = attn.to_out[1](attn.to_out[0](out))
    if getattr(attn, "to_add_out", None) is not None:
        encoder_out = attn.to_add_out(encoder_out)
    return out, encoder_out


def key_limits(attention_mask: torch.Tensor | None, batch: int, total: int) -> list[int | None]:
    """Per batch row, the keys the stock mask leaves visible (None: all)."""
    return [visible_keys(attention_mask, row, total) for row in range(batch)]


def padded_dense_attention(query, key, value, limits: list[int | None]) -> torch.Tensor:
    """Dense attention of (batch, tokens, heads, head_dim) where batch row b sees its first `limits[b]` keys."""
    mask = None
    if any(limit is not None for limit in limits):
        tokens = key.shape[1]
        ends = torch.tensor([tokens if limit is None else limit for limit in limits], device=key.device)
        mask = (torch.arange(tokens, device=key.device)[None, :] < ends[:, None])[:, None, None, :]
    out = dense_attention(query.transpose(1, 2), key.transpose(1, 2), value.transpose(1, 2), attn_mask=mask)
    return out.transpose(1, 2)


class HunyuanRadialProcessor(RadialProcessor):
    """HunyuanVideo (1.0, I2V, 1.5) joint attention, video tokens then text tokens, with the radial op."""

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, image_rotary_emb=None):
        text = 0 if encoder_hidden_states is None else encoder_hidden_states.shape[1]
        layout = self.radial_layout(encoder_hidden_states is not None, text)
        if layout is None:
            return self.stock(attn, hidden_states, encoder_hidden_states, attention_mask, image_rotary_emb)
        query, key, value = hunyuan_projections(attn, hidden_states, encoder_hidden_states, image_rotary_emb)
        out = self.across_ranks(lambda q, k, v: self.attend_rows(q, k, v, layout, attention_mask),
                                query, key, value, text)
        return hunyuan_outputs(attn, out, text, query.dtype)

    def attend_rows(self, query, key, value, layout: VideoLayout, attention_mask) -> torch.Tensor:
        """`attend` with each batch row's own padding; rows with equal padding share one kernel call."""
        limits = key_limits(attention_mask, query.shape[0], layout.total_tokens)
        if len(set(limits)) == 1:
            return self.attend(query, key, value, dataclasses.replace(layout, key_limit=limits[0]))
        out = torch.empty_like(query)
        for limit in dict.fromkeys(limits):
            rows = [row for row, own in enumerate(limits) if own == limit]
            index = torch.tensor(rows, device=query.device)
            row_layout = dataclasses.replace(layout, key_limit=limit)
            out[index] = self.attend(query[index], key[index], value[index], row_layout)
        return out


class HunyuanUlyssesProcessor:
    """HunyuanVideo's (1.0, 1.5) joint attention under context parallelism, dense: the stock processor would
    exchange the text tokens, which gen's plan keeps whole on every rank, as video tokens. `_parallel_config`
    is diffusers' (the radial processors wrap this one and read it)."""

    _attention_backend = None

    def __init__(self, parallel_config):
        self._parallel_config = parallel_config

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, image_rotary_emb=None):
        text = encoder_hidden_states.shape[1]
        query, key, value = hunyuan_projections(attn, hidden_states, encoder_hidden_states, image_rotary_emb)
        limits = key_limits(attention_mask, query.shape[0], global_tokens(query.shape[1], text, self._parallel_config))
        out = ulysses_attention(query, key, value, lambda q, k, v: padded_dense_attention(q, k, v, limits),
                                self._parallel_config, text)
        return hunyuan_outputs(attn, out, text, query.dtype)


# ----------------------------------------------------------------------------- families


@dataclass(frozen=True)
class Family:
    """A video transformer class: its mask flavour, the attention layers that go radial, its patch."""

    name: str
    flavour: str
    processor: type

    def layers(self, transformer: torch.nn.Module) -> dict[str, tuple[torch.nn.Module, int]]:
        """The radial layers with the index of their transformer block (double-stream blocks first)."""
        if self.name == "wan":
            return {f"blocks.{i}.attn1": (block.attn1, i) for i, block in enumerate(transformer.blocks)}
        double = list(transformer.transformer_blocks)
        single = list(getattr(transformer, "single_transformer_blocks", []))
        layers = {f"transformer_blocks.{i}.attn": (block.attn, i) for i, block in enumerate(double)}
        layers.update({f"single_transformer_blocks.{i}.attn": (block.attn, len(double) + i)
                       for i, block in enumerate(single)})
        return layers

    def layout(self, transformer: torch.nn.Module, hidden_states: torch.Tensor, decay: float) -> VideoLayout:
        """The video tokens of a call: (batch, channels, frames, height, width) latents after patching."""
        config = transformer.config
        if isinstance(config.patch_size, (tuple, list)):
            p_t, p_h, p_w = config.patch_size
        else:
            p_t, p_h, p_w = config.patch_size_t, config.patch_size, config.patch_size
        _, _, frames, height, width = hidden_states.shape
        return VideoLayout(frames // p_t, (height // p_h) * (width // p_w), 0, self.flavour, decay)


FAMILIES = {
    "WanTransformer3DModel": Family("wan", "wan", WanRadialProcessor),
    "HunyuanVideoTransformer3DModel": Family("hunyuan", "hunyuan", HunyuanRadialProcessor),
    "HunyuanVideo15Transformer3DModel": Family("hunyuan15", "hunyuan", HunyuanRadialProcessor),
}


def family_of(transformer: torch.nn.Module) -> Family:
    name = type(transformer).__name__
    if name not in FAMILIES:
        raise ValueError(f"radial attention supports {', '.join(FAMILIES)}; got {name}")
    return FAMILIES[name]


# ----------------------------------------------------------------------------- hook and installation


def _radial_hook(family: Family, run: RadialRun, clock: Clock | None):
    from diffusers.hooks import ModelHook

    class RadialHook(ModelHook):
        """Before each transformer call: its video layout, and the step from the clock."""

        def pre_forward(self, module, *args, **kwargs):
            hidden_states = args[0] if args else kwargs["hidden_states"]
            run.state.layout = family.layout(module, hidden_states, run.config.decay)
            position = clock() if clock is not None else None
            if position is not None:
                run.state.step, run.state.total_steps = position
            return args, kwargs

    return RadialHook()


class RadialInstallation:
    """Radial processors and hooks on some transformers; `restore()` (or leaving the `with`) puts the stock
    processors back exactly and removes the hooks."""

    def __init__(self, run: RadialRun, originals: dict, registries: list):
        self.run, self._originals, self._registries = run, originals, registries

    @property
    def config(self) -> RadialConfig:
        return self.run.config

    @property
    def stats(self) -> RadialStats:
        return self.run.stats

    @property
    def state(self) -> RadialState:
        return self.run.state

    @property
    def layer_names(self) -> list[str]:
        return [name for name, _ in self._originals]

    def restore(self) -> None:
        for (_, module), processor in self._originals.items():
            module.set_processor(processor)
        for registry in self._registries:
            registry.remove_hook(HOOK_NAME, recurse=False)
        self._originals, self._registries = {}, []

    def __enter__(self) -> RadialInstallation:
        return self

    def __exit__(self, *exc) -> None:
        self.restore()


def install_radial(transformers: torch.nn.Module | Iterable[torch.nn.Module], config: RadialConfig,
                   clock: Clock | None = None, stats: RadialStats | None = None) -> RadialInstallation:
    """Put radial processors on the self-attention of video transformers (one shared state for all, e.g. both
    experts of Wan2.2 A14B). Without a clock the step is whatever `installation.state.step` is set to."""
    from diffusers.hooks import HookRegistry

    transformers = [transformers] if isinstance(transformers, torch.nn.Module) else list(transformers)
    run = RadialRun(config, stats=stats or RadialStats())
    originals, registries = {}, []
    try:
        for index, transformer in enumerate(transformers):
            family = family_of(transformer)
            registry = HookRegistry.check_if_exists_or_initialize(transformer)
            if registry.get_hook(HOOK_NAME) is not None:
                raise ValueError(f"radial attention is already installed on this {type(transformer).__name__}")
            for name, (module, block) in family.layers(transformer).items():
                originals[(f"{index}.{name}" if len(transformers) > 1 else name, module)] = module.processor
                module.set_processor(family.processor(module.processor, block, run, family.flavour))
            registry.register_hook(_radial_hook(family, run, clock), HOOK_NAME)
            registries.append(registry)
    except Exception:
        RadialInstallation(run, originals, registries).restore()
        raise
    return RadialInstallation(run, originals, registries)


def pipeline_transformers(pipe) -> list[torch.nn.Module]:
    """The denoising transformers of a pipeline: one, or two for Wan2.2 A14B (high- and low-noise experts)."""
    return [t for t in (getattr(pipe, "transformer", None), getattr(pipe, "transformer_2", None)) if t is not None]


def pipeline_clock(pipe) -> Clock:
    """The step of a diffusers pipeline's call in progress, read from the pipeline (no callback needed):
    the index of its `current_timestep` among the timesteps this call runs (the tail of
    `scheduler.timesteps`: video-to-video starts part-way)."""

    def clock():
        timestep, total = pipe.current_timestep, getattr(pipe, "num_timesteps", None)
        timesteps = getattr(pipe.scheduler, "timesteps", None)
        if timestep is None or total is None or timesteps is None:
            return None
        nearest = int((timesteps.float() - float(timestep)).abs().argmin())  # robust to dtype casts
        return nearest - (len(timesteps) - total), total

    return clock


def radial_attention(pipe, *, decay: float | None = None, dense_layers: int | None = None,
                     dense_steps: int | None = None, dense_final_steps: int = 0, granularity: str = "block",
                     kernel: str = "flex", stats: RadialStats | None = None) -> RadialInstallation:
    """Radial attention on a stock diffusers Wan or HunyuanVideo (1.5) pipeline, for a `with` block.

    Settings left out take the defaults of the pipeline's model family (Wan2.1 1/12/0.2, Wan2.2 1/11/0.8,
    HunyuanVideo 0/12/0.95 as dense layers/steps/decay). The stock processors and hooks are restored on exit.
    """
    from gen.video_models import preset_for_pipeline

    preset = preset_for_pipeline(pipe)
    config = RadialConfig(
        decay=preset.decay if decay is None else decay, granularity=granularity,
        dense_layers=preset.dense_layers if dense_layers is None else dense_layers,
        dense_steps=preset.dense_steps if dense_steps is None else dense_steps,
        dense_final_steps=dense_final_steps, kernel=kernel,
    )
    return install_radial(pipeline_transformers(pipe), config, pipeline_clock(pipe), stats)


# ----------------------------------------------------------------------------- context parallelism


def context_parallel_config(parallel):
    """A diffusers `ContextParallelConfig` from a degree or a ready one, for this torch.distributed run (one
    process per rank); ValueError in one line otherwise. gen's processors run Ulysses only: ring attention passes
    key/value blocks around the ranks, which a block-sparse radial mask over the whole sequence does not fit
    (and diffusers' native backend cannot run it either)."""
    import torch.distributed as dist
    from diffusers import ContextParallelConfig

    if not (dist.is_available() and dist.is_initialized()):
        raise ValueError("context parallelism needs torch.distributed initialised, one process per rank: run under "
                         "torchrun and call gen.distributed.init_ranks() first (or use gen video --gpus N)")

    if isinstance(parallel, bool) or not isinstance(parallel, (int, ContextParallelConfig)):
        raise ValueError(f"context parallelism takes a degree or a diffusers ContextParallelConfig, got {parallel!r}")
    if isinstance(parallel, int):
        if parallel < 2:
            raise ValueError(f"a context-parallel degree must be at least 2, got {parallel}")
        parallel = ContextParallelConfig(ulysses_degree=parallel)
    if parallel.ring_degree > 1:
        raise ValueError("ring attention (ring_degree > 1) is not supported: radial attention needs the whole sequence "
                         "on each rank; use ulysses_degree")
    if parallel.ulysses_anything:
        raise ValueError("ulysses_anything is not supported: gen needs heads and tokens that divide by the degree")
    if parallel.ulysses_degree != dist.get_world_size():
        raise ValueError(f"context-parallel degree {parallel.ulysses_degree} with {dist.get_world_size()} processes; "
                         "start one process per rank (torchrun --nproc-per-node N)")
    return parallel


def check_context_parallel(transformer: torch.nn.Module, degree: int) -> None:
    """The transformer can be split over `degree` ranks: a supported family and heads that divide by it."""
    family = family_of(transformer)
    if getattr(transformer.config, "image_condition_type", None) == "token_replace":
        raise ValueError("HunyuanVideo-I2V (token_replace) cannot run context-parallel: its first frame's tokens are "
                         "modulated apart from the others, which a sequence shard cannot tell")
    heads = transformer.config.num_attention_heads
    if heads % degree:
        raise ValueError(f"this {family.name} transformer has {heads} attention heads, which do not divide by "
                         f"{degree}; degrees that do: {', '.join(map(str, head_divisors(heads)))}")


@contextlib.contextmanager
def _count_the_cpu_as_a_device():
    """diffusers (0.42) places each rank on device `rank % torch.accelerator.device_count()`, which is 0 on a
    machine without an accelerator (ZeroDivisionError). On such a machine only (CPU runs over gloo: tests, CPU
    benchmarks), the CPU counts as one device while parallelism is enabled; with an accelerator nothing changes."""
    if torch.accelerator.device_count() > 0:
        yield
        return
    original = torch.accelerator.device_count
    torch.accelerator.device_count = lambda: 1
    try:
        yield
    finally:
        torch.accelerator.device_count = original


def enable_context_parallel(transformers: torch.nn.Module | Iterable[torch.nn.Module], parallel) -> None:
    """diffusers' context parallelism (Ulysses) on video transformers (both experts of Wan2.2 A14B), once, after
    any LoRA is loaded and before radial attention is installed; `torch.distributed` must be initialised with one
    process per rank. Wan keeps diffusers' plan and stock processors; HunyuanVideo (1.0, 1.5) gets gen's plan and
    its joint attention processor (`HunyuanUlyssesProcessor`)."""
    transformers = [transformers] if isinstance(transformers, torch.nn.Module) else list(transformers)
    config = context_parallel_config(parallel)
    for transformer in transformers:
        check_context_parallel(transformer, config.ulysses_degree)
    for transformer in transformers:
        with _count_the_cpu_as_a_device():
            transformer.enable_parallelism(config=config, cp_plan=cp_plan_for(transformer))
        if config.mesh is None:  # both experts of Wan2.2 share one device mesh
            config.mesh = config._mesh
        family = family_of(transformer)
        if family.processor is HunyuanRadialProcessor:
            for module, _ in family.layers(transformer).values():
                module.set_processor(HunyuanUlyssesProcessor(transformer._parallel_config))

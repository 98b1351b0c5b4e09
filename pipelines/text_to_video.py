"""Text-to-video (Wan2.1/2.2) with radial sparse attention and dense warm-up.

    from pipelines import TextToVideoPipeline

    pipe = TextToVideoPipeline.from_pretrained("wan2.1-1.3b")
    out = pipe("a red fox running through snow", frames=81, width=832, height=480, seed=1)
    write_mp4("fox.mp4", out.frames)

The stock diffusers Wan pipeline runs unchanged; radial processors sit on the self-attention
layers of its transformer(s) for the duration of the call, learn the token layout from a
forward pre-hook and the denoising step from the pipeline's step callback.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

import gen
from gen.attention.radial import GRANULARITIES
from gen.attention.video import RadialState, install_radial
from gen.errors import GenError
from gen.loading import dtype_name
from gen.validation import check_guidance, check_radial_settings, check_seed, check_steps
from gen.video_models import check_video_shape, load_video_pipeline, video_layout

ATTENTION_MODES = ("radial", "dense")
StepCallback = Callable[[int, int], None]


@dataclass
class TextToVideoOutput:
    frames: np.ndarray  # (F, H, W, 3) float in [0, 1]
    parameters: dict[str, Any] = field(default_factory=dict)
    stats: dict[str, Any] = field(default_factory=dict)


class TextToVideoPipeline:
    def __init__(self, pipe, preset, device, dtype):
        self.pipe, self.preset, self.device, self.dtype = pipe, preset, device, dtype
        self.loras: list[tuple[str, float]] = []

    @classmethod
    def from_pretrained(cls, model: str, *, device: str | None = None, dtype: str | None = None,
                        ) -> TextToVideoPipeline:
        return cls(*load_video_pipeline(model, device=device, dtype=dtype))

    def load_loras(self, loras: list[tuple[str, float]]) -> None:
        """Load LoRA weights (.safetensors) with scales; they act on the same layers the radial
        processors use. Needs `peft` (the video extra)."""
        if not loras:
            return
        from gen.paths import safe_name
        from gen.video_models import check_lora_file

        names = []
        for index, (path, _) in enumerate(loras):
            check_lora_file(path)
            name = f"{safe_name(Path(path).stem, 40)}_{index}"
            try:
                self.pipe.load_lora_weights(str(path), adapter_name=name)
            except ImportError:
                raise GenError("loading LoRAs needs peft: pip install 'gen[video]'") from None
            except (ValueError, KeyError, RuntimeError, OSError) as exc:
                raise GenError(f"LoRA {Path(path).name} does not fit {self.preset.name}: "
                               f"{str(exc).splitlines()[0][:200]}") from None
            names.append(name)
        self.pipe.set_adapters(names, adapter_weights=[scale for _, scale in loras])
        self.loras = [(Path(path).name, scale) for path, scale in loras]

    def transformers(self) -> list[torch.nn.Module]:
        """One transformer (Wan2.1) or two (Wan2.2 A14B: high- and low-noise experts)."""
        return [t for t in (self.pipe.transformer, getattr(self.pipe, "transformer_2", None)) if t is not None]

    def __call__(
        self,
        prompt: str,
        negative_prompt: str = "",
        frames: int | None = None,
        width: int | None = None,
        height: int | None = None,
        num_inference_steps: int | None = None,
        guidance_scale: float | None = None,
        seed: int = 0,
        attention: str = "radial",
        dense_layers: int | None = None,
        dense_steps: int | None = None,
        dense_final_steps: int = 0,
        decay: float | None = None,
        granularity: str = "block",
        on_step: StepCallback | None = None,
        trace: list | None = None,
    ) -> TextToVideoOutput:
        p = self.preset
        frames, width, height = p.shape(frames, width, height)
        steps = p.steps if num_inference_steps is None else num_inference_steps
        guidance = p.guidance if guidance_scale is None else guidance_scale
        state = RadialState(
            flavour=p.flavour, decay=p.decay if decay is None else decay, granularity=granularity,
            dense_layers=p.dense_layers if dense_layers is None else dense_layers,
            dense_steps=p.dense_steps if dense_steps is None else dense_steps,
            dense_final_steps=dense_final_steps, total_steps=steps, trace=trace,
        )
        self._check(frames, width, height, steps, guidance, seed, attention, state)
        layout = video_layout(p, frames, width, height, state.decay)

        def step_end(pipe, index, timestep, callback_kwargs):
            state.step = index + 1
            if on_step:
                on_step(index + 1, steps)
            return callback_kwargs

        with self._attention(attention, state):
            result = self.pipe(
                prompt=prompt, negative_prompt=negative_prompt or None, height=height, width=width,
                num_frames=frames, num_inference_steps=steps, guidance_scale=guidance,
                generator=torch.Generator("cpu").manual_seed(seed), output_type="np",
                callback_on_step_end=step_end,
            )
        video = result.frames[0]
        params = {
            "kind": "video", "prompt": prompt, "negative_prompt": negative_prompt, "frames": frames,
            "width": width, "height": height, "steps": steps, "guidance": guidance, "seed": seed,
            "attention": attention, "dense_layers": state.dense_layers, "dense_steps": state.dense_steps,
            "dense_final_steps": dense_final_steps, "decay": state.decay, "mask_granularity": granularity,
            "latent_frames": layout.frames, "tokens_per_frame": layout.tokens_per_frame,
            "loras": [[name, scale] for name, scale in self.loras],
            "model": p.name, "random_weights": p.is_random, "device": self.device.type,
            "dtype": dtype_name(self.dtype), "gen_version": gen.__version__,
        }
        stats = {"radial_calls": state.radial_calls, "dense_calls": state.dense_calls}
        return TextToVideoOutput(video, params, stats)

    def _check(self, frames, width, height, steps, guidance, seed, attention, state) -> None:
        check_video_shape(self.preset, frames, width, height)
        check_steps(steps)
        check_guidance(guidance)
        check_seed(seed)
        if attention not in ATTENTION_MODES:
            raise GenError(f"attention must be one of {', '.join(ATTENTION_MODES)}, got {attention!r}")
        if state.granularity not in GRANULARITIES:
            raise GenError(f"mask granularity must be one of {', '.join(GRANULARITIES)}, got {state.granularity!r}")
        check_radial_settings(state.dense_layers, state.dense_steps, state.dense_final_steps, state.decay)

    @contextlib.contextmanager
    def _attention(self, attention: str, state: RadialState):
        if attention == "dense":
            yield
            return
        with contextlib.ExitStack() as stack:
            for transformer in self.transformers():
                installation, hook = install_radial(transformer, state)
                stack.enter_context(installation)
                stack.callback(hook.remove)
            yield

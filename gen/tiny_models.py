"""Models with random weights, built here because no weights can be downloaded: the tiny presets
(small configs, seeded, saved once with `save_pretrained` and loaded back through
`from_pretrained` like any model: for tests and offline demos) and the architecture presets
(the real configurations with random weights: for benchmarks).

Tokenizers are built locally too (byte-level CLIP vocabulary, no merges).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from gen.errors import GenError
from gen.loading import default_dtype
from gen.paths import user_cache_dir

# Bump when a tiny config changes, so cached copies built from the old config are not reused.
# 3: tiny-sdxl's scheduler config carries SDXL's set_alpha_to_one=false (tiny-sd unchanged).
TINY_VERSION = 3


# ---------------------------------------------------------------- image models


def build_tokenizer(model_max_length: int = 77):
    """A byte-level CLIP tokenizer with no merges: every byte is a token. Built offline."""
    from tokenizers.pre_tokenizers import ByteLevel
    from transformers import CLIPTokenizer

    specials = ["<|startoftext|>", "<|endoftext|>"]
    alphabet = sorted(ByteLevel.alphabet())
    tokens = specials + alphabet + [c + "</w>" for c in alphabet]
    vocab = {token: i for i, token in enumerate(tokens)}
    return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=model_max_length)


def _clip_text_config(vocab_size: int, hidden: int, layers: int, heads: int, intermediate: int,
                      act: str = "quick_gelu", projection: int | None = None):
    from transformers import CLIPTextConfig

    return CLIPTextConfig(
        vocab_size=vocab_size, hidden_size=hidden, intermediate_size=intermediate,
        num_hidden_layers=layers, num_attention_heads=heads, max_position_embeddings=77,
        hidden_act=act, projection_dim=projection or hidden,
        bos_token_id=0, eos_token_id=1, pad_token_id=1,
    )


def _tiny_vae():
    from diffusers import AutoencoderKL

    # scaling_factor 3.0 gives this random encoder's latents about unit variance, as SD's 0.18215 does for SD's.
    return AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, layers_per_block=1, norm_num_groups=8,
        block_out_channels=(8, 16, 16, 16), down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4, sample_size=64, scaling_factor=3.0,
    )


def _calm_output(unet):
    """Scale the random UNet's last conv by 0.1: it then predicts small noise that varies smoothly with
    its input, as a trained model's does, which keeps DDIM inversion well-conditioned (about 3 % error
    at 50 steps instead of diverging)."""
    import torch

    with torch.no_grad():
        unet.conv_out.weight.mul_(0.1)
        unet.conv_out.bias.mul_(0.1)
    return unet


def build_tiny_sd():
    """SD-1.x-shaped: 3 UNet levels (cross-attention on the two finest, like SD's layout)."""
    import torch
    from diffusers import DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextModel

    torch.manual_seed(0)
    tokenizer = build_tokenizer()
    unet = UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, layers_per_block=1,
        block_out_channels=(32, 64, 64),
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=32, attention_head_dim=4, norm_num_groups=16,
    )
    _calm_output(unet)
    text_encoder = CLIPTextModel(_clip_text_config(len(tokenizer), 32, 2, 4, 64))
    scheduler = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                              clip_sample=False, set_alpha_to_one=False, steps_offset=1)
    return StableDiffusionPipeline(
        vae=_tiny_vae(), text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, scheduler=scheduler,
        safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )


def _sdxl_scheduler():
    """SDXL base's scheduler config: Euler, and the DDIM keys it carries, so a DDIM schedule derived from it
    ends at ᾱ₀ (set_alpha_to_one false) as it does for the real model."""
    from diffusers import EulerDiscreteScheduler

    return EulerDiscreteScheduler.from_config({
        "beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear", "timestep_spacing": "leading",
        "steps_offset": 1, "clip_sample": False, "set_alpha_to_one": False, "skip_prk_steps": True,
        "interpolation_type": "linear", "sample_max_value": 1.0, "use_karras_sigmas": False,
    })


def build_tiny_sdxl():
    """SDXL-shaped: no attention at the finest level, two text encoders, micro-conditioning."""
    import torch
    from diffusers import StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    torch.manual_seed(0)
    tokenizer = build_tokenizer()
    unet = UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, layers_per_block=1,
        block_out_channels=(32, 64, 64),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4, 4), transformer_layers_per_block=(1, 1, 2), use_linear_projection=True,
        addition_embed_type="text_time", addition_time_embed_dim=8,
        projection_class_embeddings_input_dim=6 * 8 + 32, cross_attention_dim=64, norm_num_groups=16,
    )
    _calm_output(unet)
    text_encoder = CLIPTextModel(_clip_text_config(len(tokenizer), 32, 2, 4, 64, act="gelu"))
    text_encoder_2 = CLIPTextModelWithProjection(_clip_text_config(len(tokenizer), 32, 2, 4, 64, act="gelu"))
    return StableDiffusionXLPipeline(
        vae=_tiny_vae(), text_encoder=text_encoder, text_encoder_2=text_encoder_2, tokenizer=tokenizer,
        tokenizer_2=build_tokenizer(), unet=unet, scheduler=_sdxl_scheduler(),
    )


# ---------------------------------------------------------------- architecture presets

# arch preset -> (VAE sample size = training size in pixels, prediction type)
_ARCH_TRAIN = {"arch-sd15": (512, "epsilon"), "arch-sd21": (768, "v_prediction"), "arch-sdxl": (1024, "epsilon")}

_ARCH_UNETS: dict[str, dict] = {
    "arch-sd15": dict(sample_size=64, cross_attention_dim=768, attention_head_dim=8),
    "arch-sd21": dict(sample_size=96, cross_attention_dim=1024, attention_head_dim=(5, 10, 20, 20),
                      use_linear_projection=True, upcast_attention=True),
    "arch-sdxl": dict(
        sample_size=128, block_out_channels=(320, 640, 1280),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(5, 10, 20), transformer_layers_per_block=(1, 2, 10), cross_attention_dim=2048,
        use_linear_projection=True, addition_embed_type="text_time", addition_time_embed_dim=256,
        projection_class_embeddings_input_dim=2816,
    ),
}


def build_arch_unet(name: str, device="cpu", dtype=None):
    """The real UNet configuration of an architecture preset with seeded random weights."""
    import torch
    from diffusers import UNet2DConditionModel

    if name not in _ARCH_UNETS:
        raise GenError(f"{name!r} is not an architecture preset; choose one of: {', '.join(_ARCH_UNETS)}")
    torch.manual_seed(0)
    with torch.device(device), default_dtype(dtype):
        return UNet2DConditionModel(**_ARCH_UNETS[name])


def build_arch_pipeline(name: str, device="cpu", dtype=None):
    """A whole pipeline of an architecture preset (UNet, VAE, text encoders), random weights."""
    import torch
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, StableDiffusionXLPipeline
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    unet = build_arch_unet(name, device, dtype)
    tokenizer = build_tokenizer()
    with torch.device(device), default_dtype(dtype):
        vae = AutoencoderKL(
            block_out_channels=(128, 256, 512, 512), down_block_types=("DownEncoderBlock2D",) * 4,
            up_block_types=("UpDecoderBlock2D",) * 4, layers_per_block=2, latent_channels=4,
            sample_size=_ARCH_TRAIN[name][0],
            scaling_factor=0.13025 if name == "arch-sdxl" else 0.18215,
        )
        clip_l = _clip_text_config(49408, 768, 12, 12, 3072)
        if name == "arch-sdxl":
            text_encoder = CLIPTextModel(clip_l)
            text_encoder_2 = CLIPTextModelWithProjection(
                _clip_text_config(49408, 1280, 32, 20, 5120, act="gelu", projection=1280))
        elif name == "arch-sd21":
            text_encoder = CLIPTextModel(_clip_text_config(49408, 1024, 23, 16, 4096, act="gelu", projection=512))
        else:
            text_encoder = CLIPTextModel(clip_l)
    if name == "arch-sdxl":
        return StableDiffusionXLPipeline(vae=vae, text_encoder=text_encoder, text_encoder_2=text_encoder_2,
                                         tokenizer=tokenizer, tokenizer_2=build_tokenizer(), unet=unet,
                                         scheduler=_sdxl_scheduler())
    scheduler = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                              clip_sample=False, set_alpha_to_one=False, steps_offset=1,
                              prediction_type=_ARCH_TRAIN[name][1])
    return StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
                                   scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)


# ---------------------------------------------------------------- video models


def build_tiny_wan():
    """A Wan2.1-shaped pipeline with seeded random weights and a locally built tokenizer."""
    import torch
    from diffusers import AutoencoderKLWan, FlowMatchEulerDiscreteScheduler, WanPipeline, WanTransformer3DModel
    from transformers import UMT5Config, UMT5EncoderModel

    torch.manual_seed(0)
    tokenizer = build_tokenizer(model_max_length=512)
    text_encoder = UMT5EncoderModel(UMT5Config(vocab_size=len(tokenizer), d_model=32, d_kv=8, d_ff=64,
                                               num_layers=2, num_heads=4, relative_attention_num_buckets=8,
                                               pad_token_id=1, eos_token_id=1, decoder_start_token_id=0))
    vae = AutoencoderKLWan(base_dim=8, z_dim=4, dim_mult=[1, 1, 1, 1], num_res_blocks=1,
                           temperal_downsample=[False, True, True],
                           latents_mean=[0.0] * 4, latents_std=[1.0] * 4)
    transformer = WanTransformer3DModel(
        patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=16, in_channels=4, out_channels=4,
        text_dim=32, freq_dim=32, ffn_dim=64, num_layers=3, cross_attn_norm=True,
        qk_norm="rms_norm_across_heads", rope_max_seq_len=64,
    )
    scheduler = FlowMatchEulerDiscreteScheduler(shift=3.0)
    return WanPipeline(tokenizer=tokenizer, text_encoder=text_encoder, vae=vae, scheduler=scheduler,
                       transformer=transformer)


def build_arch_wan_transformer(device="cpu", dtype=None):
    """Wan2.1-T2V-1.3B's transformer configuration with seeded random weights."""
    import torch
    from diffusers import WanTransformer3DModel

    torch.manual_seed(0)
    with torch.device(device), default_dtype(dtype):
        return WanTransformer3DModel(
            patch_size=(1, 2, 2), num_attention_heads=12, attention_head_dim=128, in_channels=16,
            out_channels=16, text_dim=4096, freq_dim=256, ffn_dim=8960, num_layers=30, cross_attn_norm=True,
            qk_norm="rms_norm_across_heads", eps=1e-6, rope_max_seq_len=1024,
        )



def build_tiny_hunyuan():
    """A HunyuanVideo-shaped pipeline: LLaMA + CLIP text encoders, joint video/text attention."""
    import torch
    from diffusers import (AutoencoderKLHunyuanVideo, FlowMatchEulerDiscreteScheduler, HunyuanVideoPipeline,
                           HunyuanVideoTransformer3DModel)
    from transformers import CLIPTextConfig, CLIPTextModel, LlamaConfig, LlamaModel

    torch.manual_seed(0)
    tokenizer = build_tokenizer(model_max_length=1024)
    text_encoder = LlamaModel(LlamaConfig(vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32,
                                          num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=2,
                                          max_position_embeddings=2048, bos_token_id=0, eos_token_id=1,
                                          pad_token_id=1))
    tokenizer_2 = build_tokenizer()
    text_encoder_2 = CLIPTextModel(CLIPTextConfig(vocab_size=len(tokenizer_2), hidden_size=8, intermediate_size=16,
                                                  num_hidden_layers=1, num_attention_heads=2, projection_dim=8,
                                                  max_position_embeddings=77, bos_token_id=0, eos_token_id=1,
                                                  pad_token_id=1))
    vae = AutoencoderKLHunyuanVideo(
        in_channels=3, out_channels=3, latent_channels=4, down_block_types=("HunyuanVideoDownBlock3D",) * 4,
        up_block_types=("HunyuanVideoUpBlock3D",) * 4, block_out_channels=(8, 8, 8, 8), layers_per_block=1,
        act_fn="silu", norm_num_groups=4, scaling_factor=0.476986, spatial_compression_ratio=8,
        temporal_compression_ratio=4, mid_block_add_attention=True,
    )
    transformer = HunyuanVideoTransformer3DModel(
        in_channels=4, out_channels=4, num_attention_heads=2, attention_head_dim=16, num_layers=1,
        num_single_layers=2, num_refiner_layers=1, patch_size=2, patch_size_t=1, text_embed_dim=16,
        pooled_projection_dim=8, rope_axes_dim=(4, 6, 6),
    )
    scheduler = FlowMatchEulerDiscreteScheduler(shift=7.0)
    return HunyuanVideoPipeline(text_encoder=text_encoder, tokenizer=tokenizer, transformer=transformer, vae=vae,
                                scheduler=scheduler, text_encoder_2=text_encoder_2, tokenizer_2=tokenizer_2)


TINY_BUILDERS = {"tiny-sd": build_tiny_sd, "tiny-sdxl": build_tiny_sdxl, "tiny-wan": build_tiny_wan,
                 "tiny-hunyuan": build_tiny_hunyuan}


# ---------------------------------------------------------------- saved tiny presets


def tiny_preset_path(name: str) -> Path:
    """The saved folder of a tiny preset; built (atomically) on first use."""
    if name not in TINY_BUILDERS:
        raise GenError(f"{name!r} is not a tiny preset; tiny presets: {', '.join(TINY_BUILDERS)}")
    root = user_cache_dir() / "models"
    final = root / f"{name}-v{TINY_VERSION}"
    if (final / "model_index.json").is_file():
        return final
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=root))
    try:
        TINY_BUILDERS[name]().save_pretrained(staging, safe_serialization=True)
        try:
            os.rename(staging, final)
        except OSError:
            if not (final / "model_index.json").is_file():  # not a concurrent builder: a real failure
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return final

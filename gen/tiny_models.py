"""Models with random weights, built here because no weights can be downloaded: the tiny presets
(small configs, seeded, saved once with `save_pretrained` and loaded back through
`from_pretrained` like any model: for tests and offline demos) and the architecture presets
(the real configurations with random weights: for benchmarks).

Tokenizers are built locally too: a byte-level CLIP vocabulary without merges, a character-level
T5 (Unigram) vocabulary, and a byte-level Qwen2 BPE whose merges spell out the words of
Qwen-Image's prompt template, so that the template's prefix is 34 tokens as with the real
tokenizer (the pipeline drops exactly those 34 hidden states).
"""

from __future__ import annotations

import os
import shutil
import string
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


def build_t5_tokenizer(model_max_length: int = 512):
    """A character-level T5 (Unigram) tokenizer: ASCII letters, digits and punctuation, each also
    with the word-start marker; anything else is <unk>. Built offline."""
    from transformers import T5Tokenizer

    chars = string.ascii_letters + string.digits + string.punctuation
    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("\u2581", -2.0)]
    vocab += [(c, -3.0) for c in chars] + [("\u2581" + c, -3.5) for c in chars]
    return T5Tokenizer(vocab=vocab, extra_ids=0, model_max_length=model_max_length)


QWEN_SPECIALS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
# The part of QwenImagePipeline's prompt template before the prompt; its first 34 tokens are dropped.
QWEN_TEMPLATE_PREFIX = ("<|im_start|>system\nDescribe the image by detailing the color, shape, size, texture, "
                        "quantity, text, spatial relationships of the objects and background:<|im_end|>\n"
                        "<|im_start|>user\n")


def build_qwen_tokenizer():
    """A byte-level Qwen2 BPE tokenizer built offline: every byte is a token, plus merges that make each
    word of Qwen-Image's prompt template one token (as the real vocabulary does)."""
    import regex
    from tokenizers.pre_tokenizers import ByteLevel
    from transformers import Qwen2Tokenizer
    from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX

    byte_level = ByteLevel(add_prefix_space=False, use_regex=False)
    vocab = {c: i for i, c in enumerate(sorted(ByteLevel.alphabet()))}
    merges = []
    words = QWEN_TEMPLATE_PREFIX
    for special in QWEN_SPECIALS:
        words = words.replace(special, "\n")
    for word in regex.findall(PRETOKENIZE_REGEX, words):
        (piece, _), = byte_level.pre_tokenize_str(word)
        merged = piece[0]
        for char in piece[1:]:
            if merged + char not in vocab:
                vocab[merged + char] = len(vocab)
                merges.append((merged, char))
            merged += char
    for special in QWEN_SPECIALS:
        vocab[special] = len(vocab)
    return Qwen2Tokenizer(vocab=vocab, merges=merges, additional_special_tokens=list(QWEN_SPECIALS[1:]),
                          model_max_length=1024 + 34)


def _clip_text_config(vocab_size: int, hidden: int, layers: int, heads: int, intermediate: int,
                      act: str = "quick_gelu", projection: int | None = None):
    from transformers import CLIPTextConfig

    return CLIPTextConfig(
        vocab_size=vocab_size, hidden_size=hidden, intermediate_size=intermediate,
        num_hidden_layers=layers, num_attention_heads=heads, max_position_embeddings=77,
        hidden_act=act, projection_dim=projection or hidden,
        bos_token_id=0, eos_token_id=1, pad_token_id=1,
    )


def _tiny_vae(sample_size: int = 64, shift_factor: float | None = None):
    from diffusers import AutoencoderKL

    # scaling_factor 3.0 gives this random encoder's latents about unit variance, as SD's 0.18215 does for SD's.
    # Flux and SD3 pipelines also shift latents (shift_factor), so theirs need one.
    return AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, layers_per_block=1, norm_num_groups=8,
        block_out_channels=(8, 16, 16, 16), down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4, sample_size=sample_size, scaling_factor=3.0,
        shift_factor=shift_factor,
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


def _tiny_t5(tokenizer, d_model: int):
    from transformers import T5Config, T5EncoderModel

    return T5EncoderModel(T5Config(vocab_size=len(tokenizer), d_model=d_model, d_kv=8, d_ff=64, num_layers=2,
                                   num_heads=4, relative_attention_num_buckets=8, pad_token_id=0, eos_token_id=1,
                                   decoder_start_token_id=0))


def build_tiny_flux(guidance_embeds: bool = True):
    """FLUX.1-shaped: double- then single-stream blocks, CLIP (pooled) + T5 text, packed 2×2 latents.
    `guidance_embeds=False` gives a schnell-shaped model (no guidance embedding)."""
    import torch
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel
    from transformers import CLIPTextModel

    torch.manual_seed(0)
    tokenizer, tokenizer_2 = build_tokenizer(), build_t5_tokenizer()
    transformer = FluxTransformer2DModel(
        patch_size=1, in_channels=16, num_layers=1, num_single_layers=2, attention_head_dim=16, num_attention_heads=2,
        joint_attention_dim=32, pooled_projection_dim=32, guidance_embeds=guidance_embeds, axes_dims_rope=(4, 6, 6),
    )
    scheduler = FlowMatchEulerDiscreteScheduler(shift=3.0, use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15,
                                                base_image_seq_len=256, max_image_seq_len=4096)
    return FluxPipeline(
        scheduler=scheduler, vae=_tiny_vae(128, shift_factor=0.0), tokenizer=tokenizer, tokenizer_2=tokenizer_2,
        text_encoder=CLIPTextModel(_clip_text_config(len(tokenizer), 32, 2, 4, 64)),
        text_encoder_2=_tiny_t5(tokenizer_2, 32), transformer=transformer,
    )


def build_tiny_sd3():
    """SD3.5-shaped: MM-DiT joint attention, a second image-only attention in block 0 (SD3.5 medium's
    dual attention), CLIP-L + CLIP-G + T5 text, 2×2 patches inside the transformer."""
    import torch
    from diffusers import FlowMatchEulerDiscreteScheduler, SD3Transformer2DModel, StableDiffusion3Pipeline
    from transformers import CLIPTextModelWithProjection

    torch.manual_seed(0)
    tokenizer, tokenizer_3 = build_tokenizer(), build_t5_tokenizer(256)
    transformer = SD3Transformer2DModel(
        sample_size=16, patch_size=2, in_channels=4, num_layers=2, attention_head_dim=8, num_attention_heads=2,
        joint_attention_dim=64, caption_projection_dim=16, pooled_projection_dim=64, out_channels=4,
        pos_embed_max_size=32, dual_attention_layers=(0,), qk_norm="rms_norm",
    )

    def clip():  # the pipeline pads the two CLIPs' 32 + 32 features to T5's 64
        return CLIPTextModelWithProjection(_clip_text_config(len(tokenizer), 32, 2, 4, 64, act="gelu", projection=32))

    return StableDiffusion3Pipeline(
        transformer=transformer, scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0),
        vae=_tiny_vae(128, shift_factor=0.0), text_encoder=clip(), tokenizer=tokenizer, text_encoder_2=clip(),
        tokenizer_2=build_tokenizer(), text_encoder_3=_tiny_t5(tokenizer_3, 64), tokenizer_3=tokenizer_3,
    )


def build_tiny_qwen_image():
    """Qwen-Image-shaped: MM-DiT joint attention over text and packed image tokens, a Qwen2.5-VL text
    encoder (a tiny vision tower included, unused for text-to-image), Qwen-Image's 3-D causal VAE."""
    import torch
    from diffusers import (AutoencoderKLQwenImage, FlowMatchEulerDiscreteScheduler, QwenImagePipeline,
                           QwenImageTransformer2DModel)
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    torch.manual_seed(0)
    tokenizer = build_qwen_tokenizer()
    vocab = len(tokenizer)
    endoftext, im_start, im_end = tokenizer.convert_tokens_to_ids(list(QWEN_SPECIALS))
    text = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
            "num_key_value_heads": 2, "vocab_size": vocab, "bos_token_id": im_start, "eos_token_id": im_end,
            "pad_token_id": endoftext, "rope_theta": 1000000.0,
            "rope_scaling": {"mrope_section": [2, 3, 3], "rope_type": "default", "type": "default"}}
    vision = {"depth": 1, "hidden_size": 16, "intermediate_size": 16, "num_heads": 2, "out_hidden_size": 32}
    # The vision placeholders are never in a text prompt; any ids inside the vocabulary do.
    config = Qwen2_5_VLConfig(text_config=text, vision_config=vision, vocab_size=vocab, image_token_id=endoftext,
                              video_token_id=endoftext, vision_start_token_id=endoftext,
                              vision_end_token_id=endoftext)
    transformer = QwenImageTransformer2DModel(
        patch_size=2, in_channels=16, out_channels=4, num_layers=2, attention_head_dim=16, num_attention_heads=2,
        joint_attention_dim=32, guidance_embeds=False, axes_dims_rope=(4, 6, 6),
    )
    vae = AutoencoderKLQwenImage(base_dim=8, z_dim=4, dim_mult=[1, 1, 1, 1], num_res_blocks=1,
                                 temperal_downsample=[False, True, True], latents_mean=[0.0] * 4,
                                 latents_std=[1.0] * 4)
    scheduler = FlowMatchEulerDiscreteScheduler(shift=1.0, use_dynamic_shifting=True, base_shift=0.5, max_shift=0.9,
                                                base_image_seq_len=256, max_image_seq_len=8192,
                                                time_shift_type="exponential", shift_terminal=0.02)
    return QwenImagePipeline(transformer=transformer, vae=vae, scheduler=scheduler, tokenizer=tokenizer,
                             text_encoder=Qwen2_5_VLForConditionalGeneration(config))


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


# The real transformer configurations of the DiT image models (from their hub config.json), for
# benchmarks: class, config, and the number of joint (double-stream) blocks. `depth` in
# build_arch_transformer keeps the real width and cuts the depth, for CPUs (a 12B Flux does not fit).
_ARCH_TRANSFORMERS: dict[str, tuple[str, dict]] = {
    "arch-flux-dev": ("FluxTransformer2DModel", dict(
        patch_size=1, in_channels=64, num_layers=19, num_single_layers=38, attention_head_dim=128,
        num_attention_heads=24, joint_attention_dim=4096, pooled_projection_dim=768, guidance_embeds=True,
        axes_dims_rope=(16, 56, 56))),
    "arch-sd35-medium": ("SD3Transformer2DModel", dict(
        sample_size=128, patch_size=2, in_channels=16, num_layers=24, attention_head_dim=64, num_attention_heads=24,
        joint_attention_dim=4096, caption_projection_dim=1536, pooled_projection_dim=2048, out_channels=16,
        pos_embed_max_size=384, dual_attention_layers=tuple(range(13)), qk_norm="rms_norm")),
    "arch-sd35-large": ("SD3Transformer2DModel", dict(
        sample_size=128, patch_size=2, in_channels=16, num_layers=38, attention_head_dim=64, num_attention_heads=38,
        joint_attention_dim=4096, caption_projection_dim=2432, pooled_projection_dim=2048, out_channels=16,
        pos_embed_max_size=192, dual_attention_layers=(), qk_norm="rms_norm")),
    "arch-qwen-image": ("QwenImageTransformer2DModel", dict(
        patch_size=2, in_channels=64, out_channels=16, num_layers=60, attention_head_dim=128, num_attention_heads=24,
        joint_attention_dim=3584, guidance_embeds=False, axes_dims_rope=(16, 56, 56))),
}
ARCH_TRANSFORMERS = tuple(_ARCH_TRANSFORMERS)


def arch_transformer_config(name: str, depth: int | None = None) -> tuple[str, dict]:
    """(class name, config) of an architecture transformer; `depth` joint blocks instead of all (Flux: and
    twice as many single-stream blocks, its real ratio; SD3.5: dual attention kept on the first blocks)."""
    if name not in _ARCH_TRANSFORMERS:
        raise GenError(f"{name!r} is not an architecture transformer; choose one of: {', '.join(ARCH_TRANSFORMERS)}")
    class_name, config = _ARCH_TRANSFORMERS[name]
    config = dict(config)
    if depth is not None:
        config["num_layers"] = min(depth, config["num_layers"])
        if "num_single_layers" in config:
            config["num_single_layers"] = min(2 * depth, config["num_single_layers"])
        if "dual_attention_layers" in config:
            config["dual_attention_layers"] = tuple(i for i in config["dual_attention_layers"] if i < depth)
    return class_name, config


def build_arch_transformer(name: str, device="cpu", dtype=None, depth: int | None = None):
    """A DiT image model's real transformer configuration with seeded random weights (see
    `arch_transformer_config` for `depth`)."""
    import diffusers
    import torch

    class_name, config = arch_transformer_config(name, depth)
    torch.manual_seed(0)
    with torch.device(device), default_dtype(dtype):
        return getattr(diffusers, class_name)(**config)


# ---------------------------------------------------------------- video models


def _tiny_wan_text():
    """Wan's text side: a byte-level tokenizer (512 tokens, the length Wan's processors assume) and a tiny UMT5."""
    from transformers import UMT5Config, UMT5EncoderModel

    tokenizer = build_tokenizer(model_max_length=512)
    text_encoder = UMT5EncoderModel(UMT5Config(vocab_size=len(tokenizer), d_model=32, d_kv=8, d_ff=64,
                                               num_layers=2, num_heads=4, relative_attention_num_buckets=8,
                                               pad_token_id=1, eos_token_id=1, decoder_start_token_id=0))
    return tokenizer, text_encoder


def _tiny_wan_vae(latent_channels: int = 4, spatial: int = 8):
    """Wan's causal 3D VAE: 4 latent channels at 8× (Wan2.1), or 48 at 16× with a 2× patchify (Wan2.2-TI2V-5B)."""
    from diffusers import AutoencoderKLWan

    patchify = dict(is_residual=True, patch_size=2, in_channels=12, out_channels=12) if spatial == 16 else {}
    return AutoencoderKLWan(base_dim=8, z_dim=latent_channels, dim_mult=[1, 1, 1, 1], num_res_blocks=1,
                            temperal_downsample=[False, True, True], latents_mean=[0.0] * latent_channels,
                            latents_std=[1.0] * latent_channels, scale_factor_spatial=spatial, **patchify)


def _tiny_wan_transformer(in_channels: int = 4, out_channels: int = 4, **image):
    from diffusers import WanTransformer3DModel

    return WanTransformer3DModel(
        patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=16, in_channels=in_channels,
        out_channels=out_channels, text_dim=32, freq_dim=32, ffn_dim=64, num_layers=3, cross_attn_norm=True,
        qk_norm="rms_norm_across_heads", rope_max_seq_len=64, **image,
    )


def build_tiny_wan():
    """A Wan2.1-shaped pipeline with seeded random weights and a locally built tokenizer."""
    import torch
    from diffusers import FlowMatchEulerDiscreteScheduler, WanPipeline

    torch.manual_seed(0)
    tokenizer, text_encoder = _tiny_wan_text()
    vae = _tiny_wan_vae()
    transformer = _tiny_wan_transformer()
    return WanPipeline(tokenizer=tokenizer, text_encoder=text_encoder, vae=vae,
                       scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0), transformer=transformer)


def _clip_vision(image_size: int, patch_size: int):
    """A tiny CLIP vision tower and its image processor (Wan2.1-I2V's image encoder, LLaVA's vision tower)."""
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModel

    config = CLIPVisionConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2,
                              image_size=image_size, patch_size=patch_size, projection_dim=16)
    processor = CLIPImageProcessor(size={"shortest_edge": image_size},
                                   crop_size={"height": image_size, "width": image_size})
    return config, CLIPVisionModel(config), processor


def build_tiny_wan_i2v():
    """Wan2.1-I2V-shaped: a CLIP image encoder whose features enter cross-attention through `add_k_proj`/
    `add_v_proj`; the conditioning latents (mask + first frame) join on the channel axis (4 + 4 + 4)."""
    import torch
    from diffusers import FlowMatchEulerDiscreteScheduler, WanImageToVideoPipeline

    torch.manual_seed(0)
    tokenizer, text_encoder = _tiny_wan_text()
    _, image_encoder, image_processor = _clip_vision(32, 8)
    transformer = _tiny_wan_transformer(in_channels=12, image_dim=16, added_kv_proj_dim=32)
    return WanImageToVideoPipeline(tokenizer=tokenizer, text_encoder=text_encoder, vae=_tiny_wan_vae(),
                                   scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0), image_processor=image_processor,
                                   image_encoder=image_encoder, transformer=transformer)


def build_tiny_wan22_i2v():
    """Wan2.2-I2V-A14B-shaped: high- and low-noise transformers switched at a boundary, no image encoder."""
    import torch
    from diffusers import FlowMatchEulerDiscreteScheduler, WanImageToVideoPipeline

    torch.manual_seed(0)
    tokenizer, text_encoder = _tiny_wan_text()
    vae = _tiny_wan_vae()
    transformer, transformer_2 = _tiny_wan_transformer(in_channels=12), _tiny_wan_transformer(in_channels=12)
    return WanImageToVideoPipeline(tokenizer=tokenizer, text_encoder=text_encoder, vae=vae,
                                   scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0), transformer=transformer,
                                   transformer_2=transformer_2, boundary_ratio=0.875)  # 2 steps: one per expert


def build_tiny_wan_ti2v():
    """Wan2.2-TI2V-5B-shaped: a 48-channel VAE at 16× spatial compression and per-token timesteps
    (`expand_timesteps`); loaded as a WanPipeline, image-to-video through `WanImageToVideoPipeline.from_pipe`."""
    import torch
    from diffusers import FlowMatchEulerDiscreteScheduler, WanPipeline

    torch.manual_seed(0)
    tokenizer, text_encoder = _tiny_wan_text()
    vae = _tiny_wan_vae(latent_channels=48, spatial=16)
    transformer = _tiny_wan_transformer(in_channels=48, out_channels=48)
    return WanPipeline(tokenizer=tokenizer, text_encoder=text_encoder, vae=vae, transformer=transformer,
                       scheduler=FlowMatchEulerDiscreteScheduler(shift=5.0), expand_timesteps=True)


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



def _tiny_hunyuan_parts():
    """HunyuanVideo's CLIP text encoder (pooled) and 3D VAE, shared by its text- and image-to-video models."""
    from diffusers import AutoencoderKLHunyuanVideo
    from transformers import CLIPTextConfig, CLIPTextModel

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
    return tokenizer_2, text_encoder_2, vae


def _tiny_hunyuan_transformer(**image):
    from diffusers import HunyuanVideoTransformer3DModel

    return HunyuanVideoTransformer3DModel(
        in_channels=4, out_channels=4, num_attention_heads=2, attention_head_dim=16, num_layers=1,
        num_single_layers=2, num_refiner_layers=1, patch_size=2, patch_size_t=1, text_embed_dim=16,
        pooled_projection_dim=8, rope_axes_dim=(4, 6, 6), **image,
    )


def build_tiny_hunyuan():
    """A HunyuanVideo-shaped pipeline: LLaMA + CLIP text encoders, joint video/text attention."""
    import torch
    from diffusers import FlowMatchEulerDiscreteScheduler, HunyuanVideoPipeline
    from transformers import LlamaConfig, LlamaModel

    torch.manual_seed(0)
    tokenizer = build_tokenizer(model_max_length=1024)
    text_encoder = LlamaModel(LlamaConfig(vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32,
                                          num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=2,
                                          max_position_embeddings=2048, bos_token_id=0, eos_token_id=1,
                                          pad_token_id=1))
    tokenizer_2, text_encoder_2, vae = _tiny_hunyuan_parts()
    return HunyuanVideoPipeline(text_encoder=text_encoder, tokenizer=tokenizer, transformer=_tiny_hunyuan_transformer(),
                                vae=vae, scheduler=FlowMatchEulerDiscreteScheduler(shift=7.0),
                                text_encoder_2=text_encoder_2, tokenizer_2=tokenizer_2)


def build_template_tokenizer(template: str, specials: list[str], vocab_size: int = 600):
    """A byte-level BPE tokenizer whose merges are learnt from a prompt template (deterministic, offline), so that
    the template is short in tokens and its special tokens are single tokens, as with the real tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tokenizer.train_from_iterator([template], trainer)
    tokenizer.post_processor = processors.TemplateProcessing(single=f"{specials[0]} $A",
                                                             special_tokens=[(specials[0], 0)])
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, bos_token=specials[0], pad_token=specials[1],
                                   eos_token=specials[2], model_max_length=4096)


def build_tiny_hunyuan_i2v():
    """HunyuanVideo-I2V-shaped: a LLaVA text encoder sees the image (576 image tokens, every 4th kept) and the
    prompt, which join the text tokens; the first latent frame is replaced by the image's (`token_replace`)."""
    import torch
    from diffusers import FlowMatchEulerDiscreteScheduler, HunyuanVideoImageToVideoPipeline
    from diffusers.pipelines.hunyuan_video.pipeline_hunyuan_video_image2video import DEFAULT_PROMPT_TEMPLATE
    from transformers import LlamaConfig, LlavaConfig, LlavaForConditionalGeneration

    torch.manual_seed(0)
    specials = ["<|begin_of_text|>", "<pad>", "<|eot_id|>", "<|start_header_id|>", "<|end_header_id|>", "<image>"]
    tokenizer = build_template_tokenizer(DEFAULT_PROMPT_TEMPLATE["template"], specials)
    vision, _, image_processor = _clip_vision(48, 2)  # 24 × 24 = 576 patches, as LLaVA's 336 px / 14
    text = LlamaConfig(vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                       num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=2048, bos_token_id=0,
                       eos_token_id=2, pad_token_id=1)
    text_encoder = LlavaForConditionalGeneration(LlavaConfig(
        vision_config=vision, text_config=text, image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
        pad_token_id=1))
    tokenizer_2, text_encoder_2, vae = _tiny_hunyuan_parts()
    return HunyuanVideoImageToVideoPipeline(
        text_encoder=text_encoder, tokenizer=tokenizer, transformer=_tiny_hunyuan_transformer(
            image_condition_type="token_replace"), vae=vae, scheduler=FlowMatchEulerDiscreteScheduler(shift=7.0),
        text_encoder_2=text_encoder_2, tokenizer_2=tokenizer_2, image_processor=image_processor)


_QWEN_CHAT = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
              "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def _tiny_hunyuan15(task: str):
    """HunyuanVideo-1.5-shaped parts: Qwen2.5-VL text + ByT5 glyph encoders, a 16× VAE with 4 latent channels,
    a transformer with patch 1 whose text tokens are image (729) + ByT5 (256) + MLLM (1000), valid ones first."""
    from diffusers import (AutoencoderKLHunyuanVideo15, ClassifierFreeGuidance, FlowMatchEulerDiscreteScheduler,
                           HunyuanVideo15Transformer3DModel)
    from transformers import ByT5Tokenizer, Qwen2_5_VLTextConfig, Qwen2_5_VLTextModel, T5Config, T5EncoderModel

    tokenizer = build_tokenizer(model_max_length=2048)
    tokenizer.chat_template = _QWEN_CHAT
    text_encoder = Qwen2_5_VLTextModel(Qwen2_5_VLTextConfig(
        vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2,
        num_key_value_heads=2, max_position_embeddings=2048, bos_token_id=0, eos_token_id=1, pad_token_id=1,
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [1, 1, 2]}))
    tokenizer_2 = ByT5Tokenizer()
    text_encoder_2 = T5EncoderModel(T5Config(vocab_size=len(tokenizer_2), d_model=16, d_kv=8, d_ff=32, num_layers=1,
                                             num_heads=2, relative_attention_num_buckets=8))
    vae = AutoencoderKLHunyuanVideo15(latent_channels=4, block_out_channels=(8, 8, 8, 8, 8), layers_per_block=1,
                                      spatial_compression_ratio=16, temporal_compression_ratio=4)
    transformer = HunyuanVideo15Transformer3DModel(
        in_channels=9, out_channels=4, num_attention_heads=2, attention_head_dim=16, num_layers=2,
        num_refiner_layers=1, patch_size=1, patch_size_t=1, text_embed_dim=16, text_embed_2_dim=16,
        image_embed_dim=16, rope_axes_dim=(4, 6, 6), target_size=64, task_type=task)
    return dict(text_encoder=text_encoder, tokenizer=tokenizer, transformer=transformer, vae=vae,
                scheduler=FlowMatchEulerDiscreteScheduler(shift=7.0), text_encoder_2=text_encoder_2,
                tokenizer_2=tokenizer_2, guider=ClassifierFreeGuidance(guidance_scale=6.0))


def build_tiny_hunyuan15():
    import torch
    from diffusers import HunyuanVideo15Pipeline

    torch.manual_seed(0)
    return HunyuanVideo15Pipeline(**_tiny_hunyuan15("t2v"))


def build_tiny_hunyuan15_i2v():
    """HunyuanVideo-1.5-I2V-shaped: a SigLIP image encoder (27 × 27 = 729 tokens) adds the image tokens."""
    import torch
    from diffusers import HunyuanVideo15ImageToVideoPipeline
    from transformers import SiglipImageProcessor, SiglipVisionConfig, SiglipVisionModel

    torch.manual_seed(0)
    parts = _tiny_hunyuan15("i2v")
    image_encoder = SiglipVisionModel(SiglipVisionConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                                         num_attention_heads=2, image_size=54, patch_size=2))
    return HunyuanVideo15ImageToVideoPipeline(**parts, image_encoder=image_encoder,
                                              feature_extractor=SiglipImageProcessor(size={"height": 54, "width": 54}))


TINY_BUILDERS = {"tiny-sd": build_tiny_sd, "tiny-sdxl": build_tiny_sdxl, "tiny-flux": build_tiny_flux,
                 "tiny-sd3": build_tiny_sd3, "tiny-qwen-image": build_tiny_qwen_image, "tiny-wan": build_tiny_wan,
                 "tiny-wan-i2v": build_tiny_wan_i2v, "tiny-wan22-i2v": build_tiny_wan22_i2v,
                 "tiny-wan-ti2v": build_tiny_wan_ti2v, "tiny-hunyuan": build_tiny_hunyuan,
                 "tiny-hunyuan-i2v": build_tiny_hunyuan_i2v, "tiny-hunyuan15": build_tiny_hunyuan15,
                 "tiny-hunyuan15-i2v": build_tiny_hunyuan15_i2v}


# ---------------------------------------------------------------- saved tiny presets


def tiny_preset_folder(name: str) -> Path:
    """Where a tiny preset is saved (built there by `tiny_preset_path`)."""
    return user_cache_dir() / "models" / f"{name}-v{TINY_VERSION}"


def tiny_preset_path(name: str) -> Path:
    """The saved folder of a tiny preset; built (atomically) on first use."""
    if name not in TINY_BUILDERS:
        raise GenError(f"{name!r} is not a tiny preset; tiny presets: {', '.join(TINY_BUILDERS)}")
    final = tiny_preset_folder(name)
    root = final.parent
    rank = _rank_of_several()
    try:
        if rank in (None, 0):  # one process, or rank 0 of several, builds; the other ranks wait for it
            _build(name, root, final)
    finally:
        if rank is not None:
            import torch.distributed as dist

            dist.barrier()
    if not (final / "model_index.json").is_file():
        raise GenError(f"rank 0 could not build {name} in {root}")
    return final


def _build(name: str, root: Path, final: Path) -> None:
    if (final / "model_index.json").is_file():
        return
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


def _rank_of_several() -> int | None:
    """This process's rank when torch.distributed runs several processes, else None. transformers then saves
    weights on rank 0 only (the other ranks' copies would lack them), so rank 0 builds for all."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        return dist.get_rank()
    return None

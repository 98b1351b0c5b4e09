"""Attention processors, the installer that places them, and the kernels they call."""

from gen.attention.entropy import (
    ENTROPY_MODES,
    EntropyScalingProcessor,
    entropy_scale_factor,
    entropy_scaling,
    entropy_scaling_active,
)
from gen.attention.installer import (
    ProcessorInstallation,
    attention_layers,
    install_processors,
    is_cross_attention,
    select_layers,
)
from gen.attention.kernels import BACKENDS, dense_attention, resolve_backend
from gen.attention.processors import UNetAttnProcessor, dense_backend
from gen.attention.video import (
    RadialConfig,
    RadialInstallation,
    RadialStats,
    enable_context_parallel,
    install_radial,
    radial_attention,
)

__all__ = [
    "BACKENDS",
    "ENTROPY_MODES",
    "EntropyScalingProcessor",
    "ProcessorInstallation",
    "RadialConfig",
    "RadialInstallation",
    "RadialStats",
    "UNetAttnProcessor",
    "attention_layers",
    "dense_attention",
    "dense_backend",
    "enable_context_parallel",
    "entropy_scale_factor",
    "entropy_scaling",
    "entropy_scaling_active",
    "install_processors",
    "install_radial",
    "is_cross_attention",
    "radial_attention",
    "resolve_backend",
    "select_layers",
]

"""Put attention processors on selected layers of a diffusers model and take them off again.

Works on both attention families diffusers has: the UNet path (`Attention` with
`AttnProcessor2_0`) and the dispatcher-based transformers (`AttentionModuleMixin`
subclasses such as `WanAttention`). Both expose `processor` and `set_processor`,
which is all the installer relies on.

    with install_processors(pipe.unet, MyProcessor(), kind="self", include=["up_blocks.*"]):
        image = pipe(prompt).images[0]
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Literal

import torch

from gen.errors import GenError

LayerKind = Literal["self", "cross", "all"]


def attention_layers(model: torch.nn.Module) -> dict[str, torch.nn.Module]:
    """Every attention module of `model` that takes a processor, by qualified name."""
    return {
        name: module
        for name, module in model.named_modules()
        if hasattr(module, "set_processor") and hasattr(module, "processor")
    }


def is_cross_attention(name: str, module: torch.nn.Module) -> bool:
    """Whether the layer attends to another sequence (text) rather than to itself."""
    flag = getattr(module, "is_cross_attention", None)
    if flag is not None:
        return bool(flag)
    return name.rsplit(".", 1)[-1] == "attn2"


def select_layers(
    model: torch.nn.Module,
    kind: LayerKind = "all",
    include: Iterable[str] | None = None,
    exclude: Iterable[str] | None = None,
) -> dict[str, torch.nn.Module]:
    """Attention layers filtered by kind and by shell-style name patterns.

    `include`/`exclude` match the full module name (`up_blocks.2.attentions.0.*`);
    a pattern that matches no attention layer is an error, since it is almost
    always a typo.
    """
    if kind not in ("self", "cross", "all"):
        raise GenError(f"layer kind must be 'self', 'cross' or 'all', got {kind!r}")
    layers = attention_layers(model)
    include = list(include) if include is not None else None
    exclude = list(exclude or [])
    for pattern in (include or []) + exclude:
        if not any(fnmatch.fnmatchcase(name, pattern) for name in layers):
            raise GenError(
                f"layer pattern {pattern!r} matches no attention layer of {type(model).__name__}; "
                f"examples of layer names: {', '.join(list(layers)[:3])}"
            )
    selected = {}
    for name, module in layers.items():
        cross = is_cross_attention(name, module)
        if kind == "self" and cross or kind == "cross" and not cross:
            continue
        if include is not None and not any(fnmatch.fnmatchcase(name, p) for p in include):
            continue
        if any(fnmatch.fnmatchcase(name, p) for p in exclude):
            continue
        selected[name] = module
    return selected


class ProcessorInstallation:
    """Processors installed on some layers; `restore()` puts the originals back exactly."""

    def __init__(self, originals: Mapping[str, tuple[torch.nn.Module, Any]]):
        self._originals = dict(originals)

    @property
    def layer_names(self) -> list[str]:
        return list(self._originals)

    def restore(self) -> None:
        for module, original in self._originals.values():
            module.set_processor(original)
        self._originals.clear()

    def __enter__(self) -> ProcessorInstallation:
        return self

    def __exit__(self, *exc) -> None:
        self.restore()


def install_processors(
    model: torch.nn.Module,
    processor: Any = None,
    *,
    factory: Callable[[str, torch.nn.Module], Any] | None = None,
    kind: LayerKind = "all",
    include: Iterable[str] | None = None,
    exclude: Iterable[str] | None = None,
    layers: Mapping[str, torch.nn.Module] | None = None,
) -> ProcessorInstallation:
    """Install one shared `processor`, or `factory(name, module)` per layer, on the selected layers.

    Pass `layers` to install on an explicit selection instead of kind/include/exclude.
    Returns an installation usable as a context manager.
    """
    if (processor is None) == (factory is None):
        raise TypeError("pass exactly one of `processor` and `factory`")
    if layers is None:
        layers = select_layers(model, kind, include, exclude)
    if not layers:
        raise GenError(f"no attention layer of {type(model).__name__} was selected")
    # Every processor is made before any is installed: a factory that fails leaves the model untouched.
    replacements = {name: processor if factory is None else factory(name, module) for name, module in layers.items()}
    originals = {}
    for name, module in layers.items():
        originals[name] = (module, module.processor)
        module.set_processor(replacements[name])
    return ProcessorInstallation(originals)

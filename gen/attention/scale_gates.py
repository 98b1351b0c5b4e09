"""A different softmax scale for the stock attention processors of diffusers transformers, without
copying them: the factor reaches the kernel call they already make, as its `scale=` argument.

Why it is built this way:

* Copying Flux's, SD3's and Qwen-Image's processors to add `scale=` would mean one copy per model
  and per diffusers release. The stock processor keeps running; only its kernel call changes.
* `ScaledSoftmaxProcessor` wraps one layer's stock processor. While that processor runs, it publishes
  a `ScaledCall` (a factor as a function of the call's key count) in a `ContextVar`. A ContextVar is
  per thread (and per asyncio task): a second pipeline running at the same time in another thread
  publishes its own or none, so one pipeline's scaling never leaks into another's calls.
* Gates stand in for the two entry points through which stock processors reach a kernel:
  diffusers' `dispatch_attention_fn` as bound in the processor's module (Flux, Qwen-Image, Wan,
  HunyuanVideo: any backend the user picked with `set_attention_backend`), and
  `torch.nn.functional.scaled_dot_product_attention` for processors that call it directly (the
  legacy `Attention` processors, such as SD3's `JointAttnProcessor2_0`). With nothing published, or
  with a factor of exactly 1, a gate makes the stock call with the stock arguments (no `scale=`):
  bit-identical outputs. Otherwise it passes `scale = (the given scale or 1/√head_dim) · factor`;
  the kernel beneath a gate (the dispatcher's native backend calls SDPA) is not scaled twice.
* Gates are shared and counted: a gate is put in place when the first wrapper that needs it is
  installed and the original function is put back when the last one is removed, under a lock. A
  gate replaced by someone else in the meantime is left alone (never clobbered).

A wrapped processor that reaches no gate raises instead of silently leaving its softmax unscaled.
Not supported: diffusers' context parallelism (the dispatcher would see a shard of the keys),
refused when installing.
"""

from __future__ import annotations

import functools
import sys
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from types import ModuleType

import torch

from gen.attention.installer import install_processors
from gen.errors import GenError

KeyFactor = Callable[[int], float]  # the key count of one attention call -> its softmax factor

# (query, key, value, attn_mask, dropout_p, is_causal, scale, …) in both entry points
_SCALE_POSITION = 3


@dataclass
class ScaledCall:
    """One wrapped processor call in progress: how to scale it and how many kernel calls it made."""

    factor_for: KeyFactor
    layer: str
    kernel_calls: int = 0


_ACTIVE: ContextVar[ScaledCall | None] = ContextVar("gen_scaled_softmax", default=None)


def _scaled_arguments(query: torch.Tensor, args: tuple, kwargs: dict, factor: float) -> tuple[tuple, dict]:
    """The kernel's arguments with `scale` multiplied by `factor` (None stands for 1/√head_dim)."""
    args, kwargs = list(args), dict(kwargs)
    if len(args) > _SCALE_POSITION:
        base = args[_SCALE_POSITION]
        args[_SCALE_POSITION] = (query.shape[-1] ** -0.5 if base is None else base) * factor
    else:
        base = kwargs.get("scale")
        kwargs["scale"] = (query.shape[-1] ** -0.5 if base is None else base) * factor
    return tuple(args), kwargs


def _gated(original: Callable, key_dim: int) -> Callable:
    """`original` (an attention kernel entry point), scaled while a `ScaledCall` is published."""

    @functools.wraps(original)
    def gated(query, key, value, *args, **kwargs):
        call = _ACTIVE.get()
        if call is None:
            return original(query, key, value, *args, **kwargs)
        call.kernel_calls += 1
        factor = call.factor_for(key.shape[key_dim])
        token = _ACTIVE.set(None)  # whatever runs beneath this kernel call is not scaled again
        try:
            if factor == 1.0:
                return original(query, key, value, *args, **kwargs)
            args, kwargs = _scaled_arguments(query, args, kwargs, factor)
            return original(query, key, value, *args, **kwargs)
        finally:
            _ACTIVE.reset(token)

    return gated


class _Gate:
    def __init__(self, owner: ModuleType, name: str, key_dim: int):
        self.owner, self.name = owner, name
        self.original = getattr(owner, name)
        self.gated = _gated(self.original, key_dim)
        self.users = 0


_GATES: dict[tuple[str, str], _Gate] = {}
_GATES_LOCK = threading.Lock()


def _acquire_gate(owner: ModuleType, name: str, key_dim: int) -> _Gate:
    with _GATES_LOCK:
        gate = _GATES.get((owner.__name__, name))
        if gate is None:
            gate = _GATES[(owner.__name__, name)] = _Gate(owner, name, key_dim)
            setattr(owner, name, gate.gated)
        gate.users += 1
        return gate


def _release_gate(gate: _Gate) -> None:
    with _GATES_LOCK:
        gate.users -= 1
        if gate.users == 0:
            del _GATES[(gate.owner.__name__, gate.name)]
            if getattr(gate.owner, gate.name) is gate.gated:
                setattr(gate.owner, gate.name, gate.original)


def kernel_entry_point(processor) -> tuple[ModuleType, str, int]:
    """Where `processor` reaches its kernel: (module, attribute, the key tensor's token dimension).

    Processors whose module imports diffusers' dispatcher call it with (batch, tokens, heads, dim)
    tensors; the others call torch's SDPA with (batch, heads, tokens, dim).
    """
    module = sys.modules.get(type(processor).__module__)
    if module is not None and callable(getattr(module, "dispatch_attention_fn", None)):
        return module, "dispatch_attention_fn", 1
    return torch.nn.functional, "scaled_dot_product_attention", -2


class ScaledSoftmaxProcessor:
    """A layer's stock processor, run with its kernel's softmax scale multiplied by `factor_for(keys)`."""

    def __init__(self, stock, factor_for: KeyFactor, layer: str):
        if getattr(stock, "_parallel_config", None) is not None:
            raise GenError(f"{layer}: softmax scaling does not support diffusers' context parallelism (the "
                           "kernel would see a shard of the keys); disable parallelism first")
        self.stock, self.factor_for, self.layer = stock, factor_for, layer
        # diffusers' attention modules hand a processor only the keyword arguments named in
        # inspect.signature(processor.__call__) (Qwen-Image's `encoder_hidden_states_mask`, Flux's
        # `image_rotary_emb`, …): show the stock processor's signature so they all still arrive.
        self.__dict__["__call__"] = functools.update_wrapper(functools.partial(type(self).__call__, self),
                                                             stock.__call__)

    def __call__(self, attn, *args, **kwargs):
        call = ScaledCall(self.factor_for, self.layer)
        token = _ACTIVE.set(call)
        try:
            out = self.stock(attn, *args, **kwargs)
        finally:
            _ACTIVE.reset(token)
        if call.kernel_calls == 0:
            raise RuntimeError(
                f"{type(self.stock).__name__} on {self.layer} reached neither diffusers' dispatch_attention_fn nor "
                "torch's scaled_dot_product_attention, so its softmax scale cannot be changed")
        return out


@contextmanager
def scaled_softmax(model: torch.nn.Module, factor_for: KeyFactor,
                   layers: Mapping[str, torch.nn.Module]) -> Iterator[list[str]]:
    """Inside the block, the stock processors of `layers` run with their softmax scale multiplied by
    `factor_for(key count)`; afterwards processors and kernel entry points are the originals again.
    Yields the names of the layers it wrapped."""
    if not layers:
        raise GenError(f"no attention layer of {type(model).__name__} was selected")
    entry_points = {}
    for module in layers.values():
        owner, name, key_dim = kernel_entry_point(module.processor)
        entry_points[(owner.__name__, name)] = (owner, name, key_dim)
    gates: list[_Gate] = []
    try:
        with install_processors(
            model, layers=layers, factory=lambda name, module: ScaledSoftmaxProcessor(module.processor, factor_for, name),
        ) as installed:
            for owner, name, key_dim in entry_points.values():
                gates.append(_acquire_gate(owner, name, key_dim))
            yield installed.layer_names
    finally:
        for gate in gates:
            _release_gate(gate)

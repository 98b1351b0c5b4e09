"""What loading any model needs, whatever its family: hub ids and the offline rule, device and
dtype choice, and `from_pretrained` with one-line errors.

Image models (gen.models) and video models (gen.video_models) both build on this module, so
neither has to import the other.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from pathlib import Path

from gen.errors import GenError, ModelNotAvailable

DTYPES = ("fp32", "fp16", "bf16")
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


# ---------------------------------------------------------------- device and dtype


def choose_device(device: str | None = None):
    """The requested device, else CUDA, else Apple MPS, else CPU."""
    import torch

    if device:
        try:
            dev = torch.device(device)
        except RuntimeError as exc:
            raise GenError(f"invalid device {device!r}: {exc}") from None
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise GenError(f"device {device!r} requested, but CUDA is not available here; use --device cpu")
        if dev.type == "mps" and not torch.backends.mps.is_available():
            raise GenError(f"device {device!r} requested, but MPS is not available here; use --device cpu")
        return dev
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def choose_dtype(device, dtype: str | None = None):
    """fp16 on accelerators, fp32 on CPU, unless asked otherwise."""
    import torch

    table = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
    if dtype:
        if dtype not in table:
            raise GenError(f"unknown dtype {dtype!r}; choose one of: {', '.join(DTYPES)}")
        return table[dtype]
    return torch.float32 if torch.device(device).type == "cpu" else torch.float16


def dtype_name(dtype) -> str:
    import torch

    # fp64 is not a choice of --dtype, but a pipeline the caller cast to it (`from_pipe`) is named too.
    return {torch.float32: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16", torch.float64: "fp64"}[dtype]


@contextlib.contextmanager
def default_dtype(dtype):
    """Create parameters directly in `dtype` (no fp32 copy first: halves peak memory for fp16)."""
    import torch

    previous = torch.get_default_dtype()
    if dtype is not None:
        torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


# ---------------------------------------------------------------- the hub


def hub_offline() -> bool:
    """True when HF_HUB_OFFLINE forbids the hub: then nothing is downloaded."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def hub_cache_dir() -> str:
    from huggingface_hub import constants

    return constants.HF_HUB_CACHE


def pipeline_from_pretrained(location: str, name: str, torch_dtype, offline_presets: str = ""):
    """`DiffusionPipeline.from_pretrained`, cache first, with one-line errors when a model is unavailable.

    `offline_presets` names the presets that need no download, for the not-cached message.
    """
    from diffusers import DiffusionPipeline
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError

    is_local = Path(location).exists()
    if is_local:
        refuse_pickled_weights(Path(location))
    try:
        # Cache first: never touches the network for a model that is already here. Safetensors only:
        # diffusers would otherwise fall back to unpickling .bin files.
        return DiffusionPipeline.from_pretrained(location, dtype=torch_dtype, local_files_only=True,
                                                 use_safetensors=True)
    except (OSError, ValueError) as cached_error:
        if is_local:
            raise ModelNotAvailable(f"cannot load model folder {location!r}: {first_line(cached_error)}") from None
        snapshot = cached_snapshot(location)
        if snapshot is not None:
            refuse_pickled_weights(snapshot, label=location)
            if hub_offline():
                raise ModelNotAvailable(
                    f"model {name!r} ({location}) is in the Hugging Face cache ({snapshot}) but cannot be loaded: "
                    f"{first_line(cached_error)}; download it again where the hub is reachable "
                    f"(`hf download {location}`)") from None
    if hub_offline():
        raise ModelNotAvailable(not_cached_message(name, location, "HF_HUB_OFFLINE is set", offline_presets)) from None
    try:
        return DiffusionPipeline.from_pretrained(location, dtype=torch_dtype, use_safetensors=True)
    except GatedRepoError:
        raise ModelNotAvailable(
            f"model {location!r} is gated on the Hugging Face hub: accept its licence on the model page and "
            "log in with `hf auth login`"
        ) from None
    except RepositoryNotFoundError:
        raise ModelNotAvailable(f"model {location!r} does not exist on the Hugging Face hub") from None
    except OSError:
        raise ModelNotAvailable(
            not_cached_message(name, location, "the hub could not be reached", offline_presets)) from None


PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")


def refuse_pickled_weights(folder: Path, label: str | None = None) -> None:
    """A one-line refusal when a component of a pipeline folder has pickled weights and no safetensors."""
    for component in sorted(p for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []:
        files = [p for p in component.iterdir() if p.is_file()]
        if any(p.suffix == ".safetensors" for p in files):
            continue
        pickled = sorted(p for p in files if p.suffix in PICKLE_SUFFIXES)
        if pickled:
            raise ModelNotAvailable(
                f"model {label or str(folder)!r}: {component.name}/{pickled[0].name} is pickled; gen loads only "
                ".safetensors weights (loading a pickle can run code). Convert it where you trust it: load the "
                "pipeline with diffusers and save_pretrained(folder, safe_serialization=True)")


def cached_snapshot(repo_id: str) -> Path | None:
    """The cached snapshot folder of a hub pipeline (it has a model_index.json), or None."""
    from huggingface_hub import try_to_load_from_cache

    index = try_to_load_from_cache(repo_id, "model_index.json")
    return Path(index).parent if isinstance(index, str) else None


def not_cached_message(name: str, repo_id: str, reason: str, offline_presets: str = "") -> str:
    alternatives = f", or use an offline preset: {offline_presets}" if offline_presets else ""
    return (
        f"model {name!r} ({repo_id}) is not in the Hugging Face cache ({hub_cache_dir()}) and cannot be "
        f"downloaded ({reason}). Download it where the hub is reachable (`hf download {repo_id}`) and copy the "
        f"cache, pass a local diffusers folder with --model PATH{alternatives}"
    )


def first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def cached_pipelines() -> dict[str, str]:
    """Hub models in the local Hugging Face cache that have a pipeline: repo id → pipeline class.

    Read from the cache folder itself (models--ORG--NAME/snapshots/*/model_index.json), so it
    works offline and never downloads.
    """
    found: dict[str, str] = {}
    root = Path(hub_cache_dir())
    if not root.is_dir():
        return found
    for repo in sorted(root.glob("models--*")):
        repo_id = repo.name[len("models--"):].replace("--", "/", 1)
        for index in sorted(repo.glob("snapshots/*/model_index.json")):
            try:
                found[repo_id] = json.loads(index.read_text()).get("_class_name", "")
                break
            except (OSError, json.JSONDecodeError):
                continue
    return found

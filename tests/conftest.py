"""Test environment: offline, with a private cache, on the built-in tiny models.

The environment is set at import time, before torch/diffusers/huggingface_hub read it,
and is inherited by the `gen` subprocesses that the CLI tests start.
"""

import os
import tempfile

_ROOT = tempfile.mkdtemp(prefix="gen-tests-")
os.environ["GEN_CACHE_DIR"] = os.path.join(_ROOT, "gen-cache")
os.environ["HF_HOME"] = os.path.join(_ROOT, "hf-home")
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("OMP_NUM_THREADS", "2")

import pytest  # noqa: E402


def _tiny_image_pipeline(name: str):
    from pipelines import TextToImagePipeline

    return TextToImagePipeline.from_pretrained(name, device="cpu")


@pytest.fixture(scope="session")
def tiny_sd():
    return _tiny_image_pipeline("tiny-sd")


@pytest.fixture(scope="session")
def tiny_sdxl():
    return _tiny_image_pipeline("tiny-sdxl")


@pytest.fixture(scope="session")
def tiny_flux():
    return _tiny_image_pipeline("tiny-flux")


@pytest.fixture(scope="session")
def tiny_sd3():
    return _tiny_image_pipeline("tiny-sd3")


@pytest.fixture(scope="session")
def tiny_qwen_image():
    return _tiny_image_pipeline("tiny-qwen-image")

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


@pytest.fixture(scope="session")
def tiny_sd():
    from pipelines import TextToImagePipeline

    return TextToImagePipeline.from_pretrained("tiny-sd", device="cpu")


@pytest.fixture(scope="session")
def tiny_sdxl():
    from pipelines import TextToImagePipeline

    return TextToImagePipeline.from_pretrained("tiny-sdxl", device="cpu")


@pytest.fixture(scope="session")
def tiny_flux():
    from pipelines import TextToImagePipeline

    return TextToImagePipeline.from_pretrained("tiny-flux", device="cpu")


@pytest.fixture(scope="session")
def tiny_sd3():
    from pipelines import TextToImagePipeline

    return TextToImagePipeline.from_pretrained("tiny-sd3", device="cpu")


@pytest.fixture(scope="session")
def tiny_qwen_image():
    from pipelines import TextToImagePipeline

    return TextToImagePipeline.from_pretrained("tiny-qwen-image", device="cpu")

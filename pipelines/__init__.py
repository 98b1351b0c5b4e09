"""Custom pipelines composed from gen's attention methods."""

from pipelines.style_transfer import StyleTransferOutput, StyleTransferPipeline
from pipelines.text_to_image import TextToImageOutput, TextToImagePipeline

__all__ = ["StyleTransferOutput", "StyleTransferPipeline", "TextToImageOutput", "TextToImagePipeline"]

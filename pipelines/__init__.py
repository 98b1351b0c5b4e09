"""Custom pipelines composed from gen's attention methods."""

from pipelines.text_to_image import TextToImageOutput, TextToImagePipeline

__all__ = ["TextToImageOutput", "TextToImagePipeline"]

"""Custom pipelines composed from gen's attention methods."""

from pipelines.style_transfer import StyleTransferOutput, StyleTransferPipeline
from pipelines.text_to_image import TextToImageOutput, TextToImagePipeline
from pipelines.text_to_video import TextToVideoOutput, TextToVideoPipeline

__all__ = ["StyleTransferOutput", "StyleTransferPipeline", "TextToImageOutput", "TextToImagePipeline",
           "TextToVideoOutput", "TextToVideoPipeline"]

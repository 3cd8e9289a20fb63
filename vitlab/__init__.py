"""vitlab: Vision Transformers for image classification, trained from scratch or fine-tuned, and analysed."""

from vitlab.config import Config, DataConfig, ModelConfig, TrainConfig
from vitlab.errors import VitlabError
from vitlab.inference import Classifier
from vitlab.models import VisionTransformer, create_model
from vitlab.models.loading import load_checkpoint

__version__ = "0.1.0"

__all__ = [
    "Config",
    "DataConfig",
    "ModelConfig",
    "TrainConfig",
    "VitlabError",
    "VisionTransformer",
    "create_model",
    "load_checkpoint",
    "Classifier",
    "__version__",
]

"""cftune: turn small language models into text embedders by contrastive fine-tuning."""

from cftune.errors import CftuneError, ConfigError, DataFormatError, ModelSourceError
from cftune.evaluation import StsResult, evaluate_sts
from cftune.models import encode, load_embedder

__version__ = "0.1.0"
__all__ = ["CftuneError", "ConfigError", "DataFormatError", "ModelSourceError", "StsResult", "encode",
           "evaluate_sts", "load_embedder"]

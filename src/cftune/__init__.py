"""cftune: turn small language models into text embedders by contrastive fine-tuning."""

from __future__ import annotations

import importlib

from cftune.errors import CftuneError, ConfigError, DataFormatError, ModelSourceError

__version__ = "0.1.0"

# Public names from modules that import torch / transformers / sentence-transformers: loaded on first use
# (PEP 562), so `import cftune` and `cftune --help` stay fast.
_LAZY = {
    "StsResult": "cftune.evaluation",
    "evaluate_sts": "cftune.evaluation",
    "encode": "cftune.encoding",
    "load_embedder": "cftune.models",
    "prepare_for_inference": "cftune.models",
    "EmbedderDesign": "cftune.design",
    "train": "cftune.training",
    "load_config": "cftune.config",
}

__all__ = ["CftuneError", "ConfigError", "DataFormatError", "ModelSourceError", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value  # once imported, a plain attribute
        return value
    raise AttributeError(f"module 'cftune' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})

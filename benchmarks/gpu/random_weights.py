"""A model folder with an architecture's random weights: for speed measurements, where the values do not matter.

Reads a folder holding a ``config.json`` and a tokenizer (``tokenizer.json`` or ``tokenizer.json.gz``), writes
``OUT`` with seeded random weights of that config's body and the same tokenizer, loadable by cftune as a model.

Usage: python benchmarks/gpu/random_weights.py ARCH_DIR OUT
"""

from __future__ import annotations

import gzip
import shutil
import sys
from pathlib import Path

import torch
from transformers import AutoConfig, AutoModel


def main(arch: Path, out: Path) -> None:
    torch.manual_seed(0)
    AutoModel.from_config(AutoConfig.from_pretrained(arch)).save_pretrained(out)
    shutil.copy(arch / "tokenizer_config.json", out)
    packed = arch / "tokenizer.json.gz"
    if packed.exists():
        with gzip.open(packed) as source, (out / "tokenizer.json").open("wb") as target:
            shutil.copyfileobj(source, target)
    else:
        shutil.copy(arch / "tokenizer.json", out)


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))

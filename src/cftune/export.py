"""`cftune export`: a trained run -> a standalone sentence-transformers folder."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from cftune.config import ConfigError
from cftune.io import replace_folder_atomically, write_atomic
from cftune.models import load_embedder, merge_lora
from cftune.reports import model_card_section_of, write_model_card_section
from cftune.runs import EXPORT_MARK, check_export_target

EXPORT_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def export(run: str | Path, out: str | Path, *, merge: bool = False, overwrite: bool = False,
           dtype: str = "fp32") -> Path:
    """A trained run -> a standalone sentence-transformers folder (adapter kept, or merged into the weights).

    ``dtype``: the weights' type on disk, ``fp32``, ``bf16`` or ``fp16`` (half the size; the folder then loads
    and runs in that type, as transformers loads a model in the type its config names). The folder is written
    beside ``out`` and swapped in, so an interrupted export leaves ``out`` as it was.
    """
    run, out = Path(run), Path(out)
    if dtype not in EXPORT_DTYPES:
        raise ConfigError(f"export dtype must be one of {', '.join(EXPORT_DTYPES)}, got {dtype!r}")
    check_export_target(run, out, overwrite)  # before the model loads
    model = load_embedder(str(run))
    if merge:
        if not merge_lora(model):
            raise ConfigError(f"{run} has no LoRA adapter to merge")
    model.to(EXPORT_DTYPES[dtype])

    section = model_card_section_of(run)  # the model's save writes a fresh sentence-transformers card

    def write(folder: Path) -> None:
        model.save(str(folder))
        if section:
            write_model_card_section(folder, section)
        write_atomic(folder / EXPORT_MARK, json.dumps({"run": str(run.resolve()), "merged": merge,
                                                       "dtype": dtype}) + "\n")

    return replace_folder_atomically(out, write)

"""Encoding: the precision a model runs in (bf16 where the hardware has it), the vector length, and batched
encoding."""

from __future__ import annotations

import contextlib

import torch
from sentence_transformers import SentenceTransformer

from cftune.config import PRECISIONS
from cftune.errors import ConfigError
from cftune.io import cpu_has_native_bf16


def resolve_precision(precision: str, device: torch.device | str) -> str:
    """'auto' -> bfloat16 where the hardware runs it fast (CUDA with bf16, CPUs with AVX512-BF16/AMX)."""
    if precision != "auto":
        if precision not in PRECISIONS:
            raise ConfigError(f"precision must be {' or '.join(PRECISIONS)}, got {precision!r}")
        return precision
    if torch.device(device).type == "cuda":
        return "bfloat16" if torch.cuda.is_bf16_supported() else "float32"
    return "bfloat16" if cpu_has_native_bf16() else "float32"  # emulated bf16 is slower than fp32


def effective_precision(model: SentenceTransformer, precision: str) -> str:
    """What ``model`` really encodes in: ``int8`` or bf16 if an inference load quantized or cast its
    weights, otherwise ``precision`` resolved for its device."""
    if quantization := getattr(model, "cftune_quantization", None):
        return str(quantization)
    if next(model.parameters()).dtype == torch.bfloat16:
        return "bfloat16"
    return resolve_precision(precision, model.device)


def autocast(precision: str, device: torch.device | str):
    """Matrix work in bf16, reductions and norms in fp32 (torch's autocast lists); faster than fp32 where the
    CPU has bf16 natively (``cftune doctor`` says)."""
    if precision != "bfloat16":  # float32, or int8 (its kernels take fp32 in)
        return contextlib.nullcontext()
    return torch.autocast(torch.device(device).type, dtype=torch.bfloat16)


def check_dimension(dimension: int | None, full: int | None, name: str = "dimension") -> None:
    """A vector length a model can give: 1 up to its full length (None asks for the full length)."""
    if dimension is not None and not 1 <= dimension <= (full or dimension):
        raise ConfigError(f"{name} must be between 1 and this model's {full}, got {dimension}")


def set_output_dimension(model: SentenceTransformer, dimension: int | None) -> None:
    """Make ``model`` return only the leading ``dimension`` numbers of each vector (None: all of them).

    That is what a Matryoshka-trained model is for; sentence-transformers' ``truncate_dim`` does the cut.
    """
    model.truncate_dim = None  # get_embedding_dimension counts a cut already made
    check_dimension(dimension, model.get_embedding_dimension())
    model.truncate_dim = dimension


def check_prompt_name(model: SentenceTransformer, prompt_name: str | None) -> None:
    if prompt_name is not None and prompt_name not in model.prompts:
        raise ConfigError(f"prompt name {prompt_name!r}: this model has "
                          + (f"{', '.join(model.prompts)}" if model.prompts else "no named prompts"))


def use_prompt_name(model: SentenceTransformer, prompt_name: str | None) -> None:
    """Put the model's named prompt ``prompt_name`` (e.g. EmbeddingGemma's ``STS``) before every text it
    encodes from now on (sentence-transformers' default prompt); None leaves the model as it is."""
    check_prompt_name(model, prompt_name)
    if prompt_name is not None:
        model.default_prompt_name = prompt_name


def encode(
    model: SentenceTransformer,
    texts: list[str],
    *,
    batch_size: int = 32,
    precision: str = "auto",
    show_progress_bar: bool = False,
    prompt_name: str | None = None,
) -> torch.Tensor:
    """Batched, length-sorted encoding (sentence-transformers sorts longest-first) as a float32 tensor.

    ``prompt_name``: one of the model's named prompts (``query``, ``document``), put before each text."""
    check_prompt_name(model, prompt_name)
    with autocast(effective_precision(model, precision), model.device):
        vectors = model.encode(texts, batch_size=batch_size, convert_to_tensor=True,
                               show_progress_bar=show_progress_bar, prompt_name=prompt_name)
    return vectors.float()

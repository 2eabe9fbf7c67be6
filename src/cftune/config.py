"""Typed training configuration: dataclasses, loadable from YAML, with `--set key=value` overrides."""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from cftune.errors import CftuneError


class ConfigError(CftuneError):
    """A recipe file or --set override that does not fit the configuration."""


@dataclass
class LoraSettings:
    r: int = 8
    alpha: int = 32
    dropout: float = 0.1
    # q_proj,v_proj (the paper) exist in gemma, llama/MiniCPM, qwen and transformers' phi; or "all-linear".
    target_modules: str = "q_proj,v_proj"


@dataclass
class TrainConfig:
    model: str = "gemma3-270m"
    prompt: str = "none"  # none | eol | template with {text}; the same at training and evaluation
    data: str = "nli"  # nli (SimCSE triplets) or a CSV/JSONL path of anchor,positive[,negative]
    data_dir: str | None = None  # local twin of the hub data; default $CFTUNE_DATA_DIR, else the hub
    skip_bad_rows: bool = False
    max_rows: int | None = None  # use only the first N rows (quick runs)
    # loss: InfoNCE over in-batch positives (+ hard negatives) = MultipleNegativesRankingLoss(scale=1/T)
    temperature: float = 0.05
    hard_negatives: bool = True
    hardness: float = 0.0  # hard-negative penalisation strength (0 = plain InfoNCE)
    gradient_cache: bool = False  # CachedMultipleNegativesRankingLoss: big batches in small memory
    mini_batch_size: int = 16
    # optimisation (AdamW, cosine schedule with warmup)
    batch_size: int = 32  # triplets per device per step
    learning_rate: float = 5e-5
    max_steps: int = 1000
    warmup_steps: int = 100
    weight_decay: float = 1e-4
    max_length: int = 150
    precision: str = "auto"  # auto | float32 | bfloat16 (autocast)
    gradient_checkpointing: bool = False
    lora: LoraSettings = field(default_factory=LoraSettings)
    # bookkeeping
    eval_steps: int = 100  # STS-B dev Spearman every N steps; the best checkpoint is kept (0: no dev, keep last)
    save_steps: int = 100
    logging_steps: int = 10
    seed: int = 42


def _coerce(value: str | object, kind, key: str):
    """A YAML value or a --set string -> the field's declared type."""
    origin_args = typing.get_args(kind)
    if type(None) in origin_args:  # Optional[X]
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null", "")):
            return None
        kind = next(a for a in origin_args if a is not type(None))
    if kind is bool:
        if isinstance(value, bool):
            return value
        if str(value).lower() in ("true", "1", "yes", "on"):
            return True
        if str(value).lower() in ("false", "0", "no", "off"):
            return False
        raise ConfigError(f"{key}: expected true/false, got {value!r}")
    try:
        return kind(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{key}: expected {kind.__name__}, got {value!r}") from None


def _apply(obj, key: str, value, prefix: str = "") -> None:
    head, _, rest = key.partition(".")
    hints = typing.get_type_hints(type(obj))
    if head not in hints:
        known = ", ".join(prefix + f.name for f in dataclasses.fields(obj))
        raise ConfigError(f"unknown setting {prefix + head!r}; known: {known}")
    if dataclasses.is_dataclass(hints[head]):
        child = getattr(obj, head)
        items = {rest: value}.items() if rest else (value or {}).items()
        for sub_key, sub_value in items:
            _apply(child, sub_key, sub_value, prefix + head + ".")
    elif rest:
        raise ConfigError(f"{prefix + head} has no sub-settings")
    else:
        setattr(obj, head, _coerce(value, hints[head], prefix + head))


RECIPES_DIR = Path(__file__).parent / "recipes"


def recipe_names() -> list[str]:
    return sorted(p.stem for p in RECIPES_DIR.glob("*.yaml"))


def recipe_path(recipe: str | Path) -> Path:
    """A YAML path, or the name of a recipe shipped with cftune (``cpu-gemma3-270m``)."""
    path = Path(recipe)
    if path.is_file():
        return path
    shipped = RECIPES_DIR / f"{recipe}.yaml"
    if shipped.is_file():
        return shipped
    raise ConfigError(f"{recipe}: recipe file not found (shipped recipes: {', '.join(recipe_names())})")


def load_config(path: str | Path | None = None, overrides: list[str] | dict | None = None) -> TrainConfig:
    """Defaults <- YAML recipe (a path or a shipped recipe's name) <- overrides ("lora.r=16" or a dict)."""
    config = TrainConfig()
    if path is not None:
        path = recipe_path(path)
        try:
            recipe = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as err:
            raise ConfigError(f"{path}: invalid YAML ({err})") from None
        if not isinstance(recipe, dict):
            raise ConfigError(f"{path}: expected a mapping of settings")
        for key, value in recipe.items():
            _apply(config, str(key), value)
    if isinstance(overrides, dict):
        overrides = [f"{k}={v}" for k, v in overrides.items()]
    for item in overrides or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"--set expects key=value, got {item!r}")
        _apply(config, key.strip(), value.strip())
    return config


def config_to_dict(config: TrainConfig) -> dict:
    return dataclasses.asdict(config)

"""Typed training configuration: dataclasses, loadable from YAML, with `--set key=value` overrides."""

from __future__ import annotations

import dataclasses
import math
import re
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from cftune.errors import ConfigError  # noqa: F401 - defined with the other errors; importable from here

# The embedder's design (see cftune.models for what each one does); the first of each is the paper's.
POOLINGS = ("lasttoken", "mean", "weightedmean")
LOSSES = ("infonce", "cosent", "angle")  # see TrainConfig.loss
# the roles a training column can play (TrainConfig.columns); negatives may be numbered: negative_1, negative_2
COLUMN_ROLES = ("anchor", "positive", "negative", "sentence1", "sentence2", "score")
ATTENTIONS = ("causal", "bidirectional")
FINETUNES = ("lora", "full")
SWITCHES = ("auto", "true", "false")  # a speed setting: auto lets cftune decide where it pays
PRECISIONS = ("auto", "float32", "bfloat16")  # auto: bf16 where the hardware has it natively
DISTILL_LOSSES = ("cosine", "mse", "kl", "similarity")  # see TrainConfig.distill_loss
QUANTIZATIONS = ("int8",)  # inference only: int8 weights and per-token int8 activations (cftune.int8)


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
    # none | eol | template with {text}, the same at training and evaluation; auto: eol for a decoder LM (the
    # measured best: results/gemma3-270m-base-*.md), none for an encoder, a saved embedder's own prompt
    prompt: str = "auto"
    # named prompts for search, put before the text (inside the template): the query prompt goes on the anchor
    # column, the document prompt on positives and negatives; a saved model keeps them as its "query" and
    # "document" prompts (sentence-transformers' encode_query / encode_document). Empty: none.
    query_prompt: str = ""
    document_prompt: str = ""
    # the embedder's design (see cftune.models): the paper's choice is the default of each
    # auto: lasttoken (the EOS state, the paper's) for a decoder LM, a saved embedder's own (an encoder's mean) |
    # lasttoken | mean | weightedmean (SGPT position weights)
    pooling: str = "auto"
    # false: the prompt's tokens (the template's text before {text}, and a query/document prompt) are left
    # out of a mean, as INSTRUCTOR and LLM2Vec do with their instructions; mean/weightedmean pooling and a
    # template with nothing after {text} only (sentence-transformers' Pooling include_prompt)
    include_prompt: bool = True
    # auto: causal for a decoder LM (the paper's), a saved embedder's own (an encoder's bidirectional) | causal |
    # bidirectional (Gemma 3, as EmbeddingGemma)
    attention: str = "auto"
    layers: int = 0  # run only the first N transformer layers and pool the last of them (0: all)
    pooled_layers: int = 1  # pool a weighted mean of the last N layers' states (1: the last layer only)
    finetune: str = "lora"  # lora (settings below) | full (the transformer body; token embeddings frozen)
    # masked next-token prediction on the training texts before contrastive training (LLM2Vec's warm-up for
    # bidirectional attention): steps (0: off) and the fraction of tokens masked
    mntp_steps: int = 0
    mntp_mask: float = 0.2
    # nli (SimCSE triplets), a CSV/JSONL/Parquet file, a datasets folder, or a hub dataset id (org/name, or
    # org/name:config); rows of anchor,positive[,negative...] (loss infonce) or sentence1,sentence2,score
    data: str = "nli"
    # which column is which, when the file's names are not cftune's: "anchor=question,positive=answer"; a file
    # with none of the known names is read by position, as sentence-transformers reads it
    columns: str = ""
    # a second training set trained beside `data` in alternate batches (sentence-transformers' round-robin
    # sampler: an epoch ends when the smaller set is used up), read without the query/document prompts: e.g. nli
    # beside a search folder, so the model keeps its sentence similarity while it learns to search. "": none.
    similarity_data: str = ""
    data_dir: str | None = None  # local twin of the hub data; default $CFTUNE_DATA_DIR, else the hub
    skip_bad_rows: bool = False
    max_rows: int | None = None  # use only the first N rows (quick runs)
    # infonce: InfoNCE over in-batch positives (+ hard negatives) = MultipleNegativesRankingLoss(scale=1/T), on
    # anchor,positive[,negative] rows; cosent or angle: CoSENTLoss / AnglELoss on scored pairs
    # (sentence1,sentence2,score, any scale: only the order of the scores counts)
    loss: str = "infonce"
    temperature: float = 0.05
    hard_negatives: bool = True
    hardness: float = 0.0  # hard-negative penalisation strength (0 = plain InfoNCE)
    gradient_cache: bool = False  # CachedMultipleNegativesRankingLoss: big batches in small memory
    # MatryoshkaLoss: the loss also at these leading dimensions, so vectors cut to them still work (empty: off)
    matryoshka_dims: list[int] = field(default_factory=list)
    mini_batch_size: int = 16
    # knowledge distillation (cftune.distill): a teacher, any sentence-transformers model (alias, hub id or
    # folder), whose vectors of the training texts are computed once and cached on disk. None: no teacher.
    teacher: str | None = None
    teacher_prompt: str | None = None  # one of the teacher's named prompts, e.g. EmbeddingGemma's "STS"
    # cosine | mse: the student's vector (through a linear map fitted to the teacher's space, saved as a Dense
    # module, when the sizes differ) against the teacher's; kl: the student's in-batch similarity distribution
    # against the teacher's, at distill_temperature (no map needed); similarity: the student's cosine of every
    # pair of texts in the batch against the teacher's, squared difference of cosine / distill_temperature
    distill_loss: str = "cosine"
    distill_weight: float = 1.0
    contrastive_weight: float = 1.0  # the InfoNCE loss on the labelled columns beside it (0: distillation only)
    distill_temperature: float = 0.05
    # optimisation (AdamW, cosine schedule with warmup)
    batch_size: int = 32  # triplets per device per step
    learning_rate: float = 5e-5
    epochs: float = 1.0  # passes over the training rows (as sentence-transformers' num_train_epochs)
    max_steps: int | None = None  # a number of steps instead of epochs: when set, it wins (as in transformers)
    warmup_ratio: float = 0.1  # the learning rate rises over this fraction of the steps
    warmup_steps: int | None = None  # a number of warm-up steps instead: when set, it wins
    weight_decay: float = 1e-4
    max_length: int = 150
    precision: str = "auto"  # auto | float32 | bfloat16 (autocast)
    gradient_checkpointing: bool = False
    # torch.compile each transformer block (cftune.training.compile_blocks): fused kernels for the many small
    # operations of a thin model, paid for by compiling one block at the first step. auto: on a CPU with a C++
    # compiler, for a body of at least 50M parameters outside its token embeddings, gradient checkpointing off;
    # true | false (on a GPU: not measured, so auto leaves it off)
    torch_compile: str = "auto"
    # sequence packing (cftune.packing): a batch's texts laid end to end in rows instead of padded to the
    # longest, for a causal decoder that pads on the right (the same vectors, fewer positions computed). auto: on
    # a CPU, where padding costs as much as a token; true | false
    packing: str = "auto"
    # processes that prepare the next batches (sampler order kept; tokenizing and padding in them) while a step
    # runs; 0: each batch is prepared on the step's own thread between steps (what that costs on a CPU and at a
    # GPU's pace: results/train-profile)
    dataloader_workers: int = 0
    lora: LoraSettings = field(default_factory=LoraSettings)
    # bookkeeping
    eval_steps: int = 100  # STS-B dev Spearman every N steps; the best checkpoint is kept (0: no dev, keep last)
    save_steps: int = 100
    logging_steps: int = 10
    # trackers that also receive the trainer's logs (loss, lr, dev score): tensorboard, trackio, wandb; the
    # run folder's train_log.jsonl is written either way
    report_to: list[str] = field(default_factory=list)
    seed: int = 42

    @property
    def design(self):
        """The embedder's design these settings train (a ``cftune.design.EmbedderDesign``)."""
        from cftune.design import EmbedderDesign

        return EmbedderDesign(**design_settings(vars(self)))


DESIGN_SETTINGS = ("prompt", "pooling", "attention", "layers", "pooled_layers", "include_prompt")


def design_settings(settings: dict[str, Any]) -> dict[str, Any]:
    """The embedder design's settings among a config's (a TrainConfig's fields, or a saved config.yaml), as
    EmbedderDesign takes them: pooling and attention auto are None, the paper's choice for a decoder LM and a
    saved embedder's own."""
    return {name: None if name in ("pooling", "attention") and settings.get(name) == "auto" else settings.get(name)
            for name in DESIGN_SETTINGS}


def _coerce(value: str | object, kind, key: str):
    """A YAML value or a --set string -> the field's declared type."""
    origin_args = typing.get_args(kind)
    if type(None) in origin_args:  # Optional[X]
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null", "")):
            return None
        kind = next(a for a in origin_args if a is not type(None))
    if isinstance(value, str) and kind is not str:
        value = value.strip()  # " 5", "true " from --set; a text setting keeps its spaces
    if kind is str and isinstance(value, bool):
        return str(value).lower()  # YAML's `torch_compile: true` for a setting spelled auto | true | false
    if typing.get_origin(kind) is list:
        # a YAML list, or "640,256,128"; "+" also separates, so that one --grid level can hold a list
        items = value if isinstance(value, list) else [v for v in re.split(r"[,+\s]+", str(value)) if v]
        return [_coerce(item, typing.get_args(kind)[0], key) for item in items]
    if kind is bool:
        if isinstance(value, bool):
            return value
        if str(value).lower() in ("true", "1", "yes", "on"):
            return True
        if str(value).lower() in ("false", "0", "no", "off"):
            return False
        raise ConfigError(f"{key}: expected true/false, got {value!r}")
    # int(True) == 1 and int(2.5) == 2: YAML's `max_steps: true` or `2.5` would pass silently
    if (kind in (int, float) and isinstance(value, bool)) or (
            kind is int and isinstance(value, float) and not value.is_integer()):
        raise ConfigError(f"{key}: expected {kind.__name__}, got {value!r}")
    try:
        return kind(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{key}: expected {kind.__name__}, got {value!r}") from None


def _apply(obj, key: str, value, prefix: str = "") -> list[str]:
    """Set ``key`` (dotted, or a section given a mapping); returns the full names of the settings it set."""
    head, _, rest = key.partition(".")
    hints = typing.get_type_hints(type(obj))
    if head not in hints:
        known = ", ".join(prefix + f.name for f in dataclasses.fields(obj))
        raise ConfigError(f"unknown setting {prefix + head!r}; known: {known}")
    if dataclasses.is_dataclass(hints[head]):
        if not rest and value is not None and not isinstance(value, dict):  # `lora: 5` in YAML, --set lora=5
            raise ConfigError(f"{prefix + head}: expected a mapping of settings such as {prefix + head}.r, "
                              f"got {value!r}")
        items = {rest: value} if rest else (value or {})
        return [name for sub_key, sub_value in items.items()
                for name in _apply(getattr(obj, head), str(sub_key), sub_value, prefix + head + ".")]
    if rest:
        raise ConfigError(f"{prefix + head} has no sub-settings")
    setattr(obj, head, _coerce(value, hints[head], prefix + head))
    return [prefix + head]


def _prompt_ok(prompt: str) -> bool:
    from cftune.aliases import PROMPTS  # the prompt names, without importing torch

    return prompt in PROMPTS or prompt == "auto" or prompt.count("{text}") == 1


def parse_columns(spec: str) -> dict[str, str]:
    """ "anchor=question,positive=answer" -> {"anchor": "question", "positive": "answer"} (role -> column)."""
    mapping: dict[str, str] = {}
    for item in (part.strip() for part in spec.split(",") if part.strip()):
        role, sep, column = (x.strip() for x in item.partition("="))
        if not sep or not column:
            raise ConfigError(f"columns: expected role=column items separated by commas, got {item!r}")
        if role not in COLUMN_ROLES and not re.fullmatch(r"negative_[0-9]+", role):
            raise ConfigError(f"columns: unknown role {role!r}; roles: {', '.join(COLUMN_ROLES)}, negative_N")
        if role in mapping:
            raise ConfigError(f"columns: {role} is given twice")
        mapping[role] = column
    return mapping


def training_format(config: TrainConfig):
    """What ``config``'s training rows hold and which column is which (a ``cftune.data.TrainingFormat``)."""
    from cftune.data import TrainingFormat

    return TrainingFormat(parse_columns(config.columns), scored_pairs(config), texts=unlabelled(config))


def _columns_ok(spec: str) -> bool:
    parse_columns(spec)  # raises ConfigError with the item at fault
    return True


def unlabelled(config: TrainConfig) -> bool:
    """Whether the run learns from a teacher alone, on plain texts (no positives: contrastive_weight 0)."""
    return bool(config.teacher) and config.contrastive_weight == 0


def scored_pairs(config: TrainConfig) -> bool:
    """Whether the run trains on scored pairs (sentence1, sentence2, score) rather than anchor/positive rows."""
    return config.loss != "infonce"


def prompt_exclusion_problem(prompt: str, pooling: str) -> str | None:
    """Why ``include_prompt: false`` cannot work with this prompt and pooling, or None when it can.

    sentence-transformers leaves out the first tokens of each input, as many as the prompt it put before the
    text has; so the prompt must come before the text, all of it, and the pooling must average tokens."""
    from cftune.aliases import PROMPTS

    if pooling not in ("mean", "weightedmean"):
        return f"false leaves tokens out of a mean: it needs mean or weightedmean pooling, not {pooling}"
    if prompt == "auto":
        return "false needs a prompt given explicitly (none, or a prefix such as 'Query: {text}'); auto is eol " \
               "for a decoder, which puts text after {text}"
    template = PROMPTS.get(prompt, prompt)
    if not template.endswith("{text}"):
        return (f"false needs a prompt with nothing after {{text}} (none, or a prefix such as "
                f"'Query: {{text}}'); {prompt!r} puts text after it")
    return None


def _finite(check: Callable[[float], bool]) -> Callable[[float], bool]:
    return lambda value: math.isfinite(value) and check(value)  # nan and inf fail every comparison we mean


# Experiment trackers the trainer can report to -> the packages that provide them (any one will do)
TRACKERS = {"tensorboard": ("tensorboard", "tensorboardX"), "trackio": ("trackio",), "wandb": ("wandb",)}


# What every setting must be, checked when a config is loaded, before any model or data is read; a new
# setting adds a line. Types are already checked by _coerce; these are the values that would otherwise fail
# late (temperature 0: a division by zero after the model loaded) or silently do something else
# (max_steps -5: the trainer runs 3 epochs instead).
def _one_of(names: tuple[str, ...]) -> str:
    return "one of " + ", ".join(names)


# The embedder design's settings: checked here for a recipe and by cftune.design.EmbedderDesign for a design
# made in Python (design_problem, one rule for both). None: as saved.
DESIGN_CHECKS: list[tuple[str, Callable[[Any], bool], str]] = [
    ("prompt", _prompt_ok, "one of none, eol, auto or a template containing {text} once"),
    ("pooling", lambda v: v in POOLINGS, _one_of(POOLINGS)),
    ("attention", lambda v: v in ATTENTIONS, _one_of(ATTENTIONS)),
    ("layers", lambda v: v >= 0, ">= 0 (0: all)"),
    ("pooled_layers", lambda v: v >= 1, ">= 1"),
]


def design_problem(settings: dict[str, Any]) -> tuple[str, str] | None:
    """The first bad setting of an embedder design (prompt, pooling, attention, layers, pooled_layers,
    include_prompt; None values are not checked) and what it must be; None when all are good."""
    for name, check, must in DESIGN_CHECKS:
        value = settings.get(name)
        if value is None:
            continue
        try:
            ok = check(value)
        except TypeError:  # a value of the wrong type, given in Python
            ok = False
        if not ok:
            return name, f"must be {must}, got {value!r}"
    if settings.get("include_prompt") is False and (problem := prompt_exclusion_problem(
            settings.get("prompt") or "none", settings.get("pooling") or "lasttoken")):
        return "include_prompt", problem
    return None


CHECKS: list[tuple[str, Callable[[Any], bool], str]] = [
    ("loss", lambda v: v in LOSSES, _one_of(LOSSES)),
    ("columns", _columns_ok, "role=column items"),
    ("finetune", lambda v: v in FINETUNES, _one_of(FINETUNES)),
    ("torch_compile", lambda v: v in SWITCHES, _one_of(SWITCHES)),
    ("packing", lambda v: v in SWITCHES, _one_of(SWITCHES)),
    ("dataloader_workers", lambda v: v >= 0, ">= 0 (0: on the step's thread)"),
    ("mntp_steps", lambda v: v >= 0, ">= 0 (0: off)"),
    ("mntp_mask", _finite(lambda v: 0 < v < 1), "> 0 and < 1"),
    ("max_rows", lambda v: v is None or v >= 1, "none or >= 1"),
    ("temperature", _finite(lambda v: v > 0), "> 0"),
    ("hardness", _finite(lambda v: v >= 0), ">= 0"),
    ("mini_batch_size", lambda v: v >= 1, ">= 1"),
    ("batch_size", lambda v: v >= 1, ">= 1"),
    ("learning_rate", _finite(lambda v: v > 0), "> 0"),
    ("epochs", _finite(lambda v: v > 0), "> 0"),
    ("max_steps", lambda v: v is None or v >= 1, "none or >= 1"),
    ("warmup_ratio", _finite(lambda v: 0 <= v < 1), ">= 0 and < 1"),
    ("warmup_steps", lambda v: v is None or v >= 0, "none or >= 0"),
    ("weight_decay", _finite(lambda v: v >= 0), ">= 0"),
    ("max_length", lambda v: v >= 1, ">= 1"),
    ("precision", lambda v: v in PRECISIONS, _one_of(PRECISIONS)),
    ("matryoshka_dims", lambda v: all(d >= 1 for d in v) and len(set(v)) == len(v), "distinct sizes >= 1"),
    ("lora.r", lambda v: v >= 1, ">= 1"),
    ("lora.alpha", _finite(lambda v: v > 0), "> 0"),
    ("lora.dropout", _finite(lambda v: 0 <= v < 1), ">= 0 and < 1"),
    ("eval_steps", lambda v: v >= 0, ">= 0 (0: no dev set)"),
    ("save_steps", lambda v: v >= 1, ">= 1"),
    ("logging_steps", lambda v: v >= 1, ">= 1"),
    ("report_to", lambda v: set(v) <= set(TRACKERS), "a list of " + ", ".join(TRACKERS)),
    ("distill_loss", lambda v: v in DISTILL_LOSSES, _one_of(DISTILL_LOSSES)),
    ("distill_weight", _finite(lambda v: v >= 0), ">= 0"),
    ("contrastive_weight", _finite(lambda v: v >= 0), ">= 0"),
    ("distill_temperature", _finite(lambda v: v > 0), "> 0"),
]


def _value(config: TrainConfig, name: str):
    for part in name.split("."):
        config = getattr(config, part)
    return config


def validate(config: TrainConfig, origins: dict[str, str] | None = None) -> TrainConfig:
    """Raise ConfigError naming the first bad setting (and the recipe file it came from, if any)."""
    origins = origins or {}

    def fail(name: str, problem: str):
        where = f"{origins[name]}: " if name in origins else ""
        raise ConfigError(f"{where}{name}: {problem}")

    if bad := design_problem(design_settings(vars(config))):
        fail(*bad)
    for name, check, must in CHECKS:
        value = _value(config, name)
        try:
            ok = check(value)
        except TypeError:  # a TrainConfig built in Python with a value of the wrong type
            ok = False
        if not ok:
            fail(name, f"must be {must}, got {value!r}")
    if scored_pairs(config):
        for name, value in (("gradient_cache", config.gradient_cache), ("teacher", config.teacher)):
            if value:
                fail(name, f"goes with loss infonce; loss {config.loss} trains on scored pairs")
    if config.similarity_data:
        for name, value in (("teacher", config.teacher), ("loss", scored_pairs(config)),
                            ("matryoshka_dims", config.matryoshka_dims)):
            if value:
                fail("similarity_data", f"does not combine with {name} yet")
    if config.teacher:
        if config.gradient_cache or config.matryoshka_dims:
            fail("teacher", "distillation does not combine with gradient_cache or matryoshka_dims yet")
        if config.distill_weight == 0 and config.contrastive_weight == 0:
            fail("distill_weight", "and contrastive_weight are both 0: nothing to train on")
    # the best checkpoint is chosen among saved ones, so saves must fall on dev evaluations (transformers
    # refuses this too, but only once the model is loaded)
    if config.eval_steps and config.save_steps % config.eval_steps:
        fail("save_steps", f"must be a multiple of eval_steps ({config.eval_steps}) when there is a dev set, "
                           f"got {config.save_steps}")
    return config


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
    config, origins = TrainConfig(), dict[str, str]()  # setting -> the recipe file it came from (for errors)
    if path is not None:
        path = recipe_path(path)
        try:
            recipe = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as err:
            raise ConfigError(f"{path}: invalid YAML ({err})") from None
        if not isinstance(recipe, dict):
            raise ConfigError(f"{path}: expected a mapping of settings")
        for key, value in recipe.items():
            try:
                origins |= dict.fromkeys(_apply(config, str(key), value), str(path))
            except ConfigError as err:
                raise ConfigError(f"{path}: {err}") from None
    pairs: list[tuple[str, object]] = []
    if isinstance(overrides, dict):  # values as they are: a list stays a list
        pairs = [(str(key), value) for key, value in overrides.items()]
    for item in overrides if isinstance(overrides, list) else []:
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"--set expects key=value, got {item!r}")
        pairs.append((key.strip(), value))  # a text keeps its spaces ("query: "); _coerce strips the rest
    for key, value in pairs:
        for name in _apply(config, key, value):
            origins.pop(name, None)  # no longer the file's value
    return validate(config, origins)


def training_steps(config: TrainConfig, rows: list[int], world_size: int = 1) -> int:
    """The optimizer steps a run takes: ``max_steps`` when set, else ``epochs`` passes over the training sets of
    these sizes in full batches (the last partial batch is dropped), at least one. Several sets alternate batch by
    batch, and an epoch ends when the smallest is used up (sentence-transformers' round-robin sampler)."""
    if config.max_steps is not None:
        return config.max_steps
    batches = len(rows) * min(r // (config.batch_size * world_size) for r in rows)
    return max(1, math.ceil(config.epochs * batches))


def warmup_steps(config: TrainConfig, steps: int) -> int:
    """``warmup_steps`` when set, else ``warmup_ratio`` of the run's ``steps`` (rounded up)."""
    return config.warmup_steps if config.warmup_steps is not None else math.ceil(config.warmup_ratio * steps)


def config_to_dict(config: TrainConfig) -> dict:
    return dataclasses.asdict(config)


# Settings that change how a run is recorded, not what it computes; every other setting (a new one too)
# counts as changing the result, so a run folder is continued only with the settings that started it.
BOOKKEEPING = {"logging_steps", "report_to"}


def flat_settings(settings: dict, prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in settings.items():
        flat |= flat_settings(value, f"{prefix}{key}.") if isinstance(value, dict) else {prefix + key: value}
    return flat


@dataclass(frozen=True)
class Experiment:
    """What `cftune reproduce --experiment NAME` runs: which shipped recipe trains which model, scored on which
    STS tasks. (A recipe is one YAML file of training settings; an experiment names one recipe per model.)"""

    recipes: dict[str, str]  # model -> recipe; a model outside it trains with the first recipe
    tasks: str = "all"
    title: str = ""  # shown at the top of the report
    # settings that turn each recipe into its reference row, trained and scored beside it (e.g. the same
    # recipe without its teacher: the paper's method), under this label; none: no reference row
    reference: dict[str, Any] = dataclasses.field(default_factory=dict)
    reference_label: str = ""


EXPERIMENTS: dict[str, Experiment] = {
    "cpu-quick": Experiment({"gemma3-270m": "cpu-gemma3-270m-quick"}, tasks="STSBenchmark,STS17,BIOSSES",
                            title="the quick version: a short training, 3 of the 9 STS tasks"),
    "cpu-small": Experiment({"gemma3-270m": "cpu-gemma3-270m"}),
    "paper": Experiment({"minicpm-2b": "paper-minicpm-2b", "gemma-2b": "paper-gemma-2b", "phi-2": "paper-phi-2"}),
    "distill": Experiment({"minilm-l6": "cpu-minilm-l6-distill"},
                          title="a student of EmbeddingGemma-300m, beside the same training without the teacher",
                          reference={"teacher": None, "data": "nli", "contrastive_weight": 1.0},
                          reference_label="paper method (no teacher)"),
}


def find_experiment(name: str) -> Experiment:
    if name not in EXPERIMENTS:
        raise ConfigError(f"unknown experiment {name!r}; known: {', '.join(EXPERIMENTS)}", "experiment")
    return EXPERIMENTS[name]


def check_quantization(quantize: str | None, device: str | None = None) -> None:
    """``quantize`` is one cftune has, for this device: checked before a model loads."""
    if quantize is None:
        return
    if quantize not in QUANTIZATIONS:
        raise ConfigError(f"must be one of {', '.join(QUANTIZATIONS)}, got {quantize!r}", "quantize")
    if device is None:
        from sentence_transformers.util import get_device_name  # torch: only where no device was named

        device = get_device_name()  # the device sentence-transformers will load onto
    target = str(device)
    if not target.startswith("cpu"):
        raise ConfigError(f"int8 is for CPUs; on {target} use precision auto (bf16 where the hardware has it)",
                          "quantize")


def check_trackers_installed(trackers: list[str]) -> None:
    """A missing tracker package fails now, with the install command, not after the model has loaded."""
    import importlib.util

    for tracker in trackers:
        if not any(importlib.util.find_spec(package) for package in TRACKERS[tracker]):
            raise ConfigError(f"report_to: {tracker} is not installed here (pip install {TRACKERS[tracker][0]})")

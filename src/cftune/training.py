"""Contrastive fine-tuning: LoRA + InfoNCE on triplets, assembled from sentence-transformers' trainer.

What we use as is: SentenceTransformerTrainer (AdamW, cosine schedule with warmup, checkpoints, resume,
bf16 autocast, torchrun/accelerate), MultipleNegativesRankingLoss and its cached variant (the InfoNCE of
the paper), the no-duplicates batch sampler, EmbeddingSimilarityEvaluator on STS-B dev, and peft's LoRA.
What we add: the recipe -> trainer mapping, a JSON-lines log with a PNG curve, checkpoints a resume can
verify, and one writer per run folder (its layout: `cftune.runs`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any

import torch
import yaml
from transformers import TrainerCallback

from cftune.config import (
    ConfigError,
    TrainConfig,
    check_trackers_installed,
    config_to_dict,
    scored_pairs,
    training_format,
    training_steps,
    validate,
    warmup_steps,
)
from cftune.data import Triplets, existing_data_dir, load_sts_dev, load_training_data
from cftune.design import EmbedderDesign, lm_body, weights_per_token
from cftune.encoding import resolve_precision
from cftune.io import (
    FolderLock,
    disk_full_error,
    format_duration,
    is_disk_full,
    machine,
    write_atomic,
)
from cftune.models import load_embedder
from cftune.packing import ROW_TOKENS, packed_batches
from cftune.prompts import TEMPLATE_PROMPT, set_named_prompts
from cftune.reports import (
    model_card_section,
    plot_training_curve,
    write_model_card_section,
)
from cftune.runs import (
    RunFolder,
    check_run_target,
    cut_log,
    last_complete_checkpoint,
    mark_run_folder,
    write_manifest,
)
from cftune.sources import check_teacher

log = logging.getLogger(__name__)
DEV_NAME = "sts-dev"
DEV_METRIC = f"eval_{DEV_NAME}_spearman_cosine"


def build_loss(model, config: TrainConfig, world_size: int = 1, distillation=None):
    """InfoNCE with temperature T is cross-entropy over cosine / T: MNRL with scale = 1 / T.

    Hard negatives are the dataset's third column (drop it to switch them off); penalising hard negatives
    is MNRL's hardness weighting; gradient caching is its cached variant; with several processes the
    negatives are gathered from all of them. With ``matryoshka_dims``, MatryoshkaLoss (Kusupati et al. 2022,
    arXiv 2205.13147) adds the same loss on the vectors cut to each of those leading dimensions.
    """
    from sentence_transformers.sentence_transformer.losses import (
        AnglELoss,
        CachedMultipleNegativesRankingLoss,
        CoSENTLoss,
        MatryoshkaLoss,
        MultipleNegativesRankingLoss,
    )

    if scored_pairs(config):  # CoSENT (Su 2022) or AnglE (Li & Li 2023, arXiv 2309.12871) on scored pairs
        scored = CoSENTLoss(model) if config.loss == "cosent" else AnglELoss(model)
        return MatryoshkaLoss(model, scored, sorted(config.matryoshka_dims, reverse=True)) \
            if config.matryoshka_dims else scored
    kwargs: dict[str, Any] = {"scale": 1.0 / config.temperature, "gather_across_devices": world_size > 1}
    if config.hardness:
        kwargs |= {"hardness_mode": "hard_negatives" if config.hard_negatives else "in_batch_negatives",
                   "hardness_strength": config.hardness}
    loss: torch.nn.Module
    if config.gradient_cache:
        loss = CachedMultipleNegativesRankingLoss(model, mini_batch_size=config.mini_batch_size, **kwargs)
    else:
        loss = MultipleNegativesRankingLoss(model, **kwargs)
    if distillation is not None:  # a teacher: its loss beside InfoNCE (cftune.distill)
        from cftune.distill import DistillationLoss

        return DistillationLoss(model, loss if config.contrastive_weight else None, config, distillation.vectors,
                                distillation.teacher_rows)
    if not config.matryoshka_dims:
        return loss
    full = model.get_embedding_dimension()
    if max(config.matryoshka_dims) > full:
        raise ConfigError(f"matryoshka_dims: {max(config.matryoshka_dims)} is more than this model's {full} "
                          "dimensions")
    return MatryoshkaLoss(model, loss, sorted(config.matryoshka_dims, reverse=True))


def add_lora(model, config: TrainConfig) -> None:
    """Attach a fresh LoRA adapter to the transformer body; peft freezes every base weight."""
    from peft import LoraConfig, TaskType

    spec = config.lora.target_modules
    targets: str | list[str] = spec if spec == "all-linear" else [t.strip() for t in spec.split(",") if t.strip()]
    if isinstance(targets, list):
        names = {name.rsplit(".", 1)[-1] for name, _ in lm_body(model).named_modules()}
        missing = [t for t in targets if t not in names]
        if missing:
            raise ConfigError(f"lora.target_modules {missing} not in this model; linear layers named e.g. "
                              f"{sorted(n for n in names if 'proj' in n or 'dense' in n)[:12]}")
    model.add_adapter(LoraConfig(task_type=TaskType.FEATURE_EXTRACTION, r=config.lora.r,
                                 lora_alpha=config.lora.alpha, lora_dropout=config.lora.dropout,
                                 target_modules=targets))


COMPILE_MIN_WEIGHTS = 50_000_000  # torch_compile auto: a body this big or bigger (weights_per_token)


def has_cpp_compiler() -> bool:
    """torch.compile's default backend (inductor) builds its CPU kernels with a C++ compiler."""
    return any(shutil.which(c) for c in (os.environ.get("CXX", "g++"), "g++", "c++", "clang++"))


def wants_compile(config: TrainConfig, model) -> bool:
    """The torch_compile setting for this model: auto compiles, on a CPU with a C++ compiler, a body of at least
    COMPILE_MIN_WEIGHTS weights a token meets (Gemma 3 270M's step gains most, results/train-profile) when
    gradient checkpointing is off; a tiny model would spend more on compiling than it saves. On a GPU it was not
    measured: auto leaves it off there, true turns it on."""
    if config.torch_compile != "auto":
        return config.torch_compile == "true"
    return (model.device.type == "cpu" and has_cpp_compiler() and not config.gradient_checkpointing
            and weights_per_token(model) >= COMPILE_MIN_WEIGHTS)


def wants_packing(config: TrainConfig, model) -> bool:
    """The packing setting for this run: auto packs on a CPU, where a padded position costs what a token does
    (results/train-profile); on a GPU padding is cheaper and packed attention masks may keep SDPA off its
    fastest kernels (not measured there). Only models ``cftune.packing.can_pack`` are packed, whatever the
    setting."""
    return config.packing == "true" or (config.packing == "auto" and model.device.type == "cpu")


def compile_blocks(model) -> int:
    """torch.compile each transformer block of the body, in place; returns how many.

    Regional compilation (PyTorch's recipe for repeated blocks): one block's graph is traced once and every
    layer reuses it, so compiling takes about a minute, not many, and the rest of the model (embeddings,
    pooling, loss) stays eager. It fuses the many small operations around the matrix products (norms, rotary
    positions, activations, dtype casts) into a few kernels. ``dynamic=True``: every batch has its own length,
    and one graph serves them all.
    """
    body = lm_body(model)
    blocks = max((m for m in body.modules() if isinstance(m, torch.nn.ModuleList)), key=len)
    for block in blocks:
        block.compile(dynamic=True)
    return len(blocks)


def peak_rss_gib() -> float:
    """This process's peak resident memory so far (Linux reports KiB, macOS bytes)."""
    import resource
    import sys

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**30 if sys.platform == "darwin" else peak / 2**20


def freeze_token_embeddings(model) -> None:
    """Full fine-tuning of the body: every weight trains except the token embeddings.

    The embedding table is most of a small LM (168M of Gemma 3 270M's 268M parameters, for its 262k-token
    vocabulary); a few thousand sentences touch a sliver of its rows, and freezing it saves its gradient and
    its two AdamW moments.
    """
    body = lm_body(model)
    for parameter in body.parameters():
        parameter.requires_grad = True
    body.get_input_embeddings().weight.requires_grad = False


class JsonLogCallback(TrainerCallback):
    """Appends each trainer log (loss, lr, dev Spearman) to train_log.jsonl, one JSON object a line."""

    def __init__(self, path: Path):
        self.path = path

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.is_world_process_zero and logs:
            with self.path.open("a", encoding="utf-8") as handle:
                handle.write(json.dumps({"step": state.global_step, **logs}) + "\n")


class ManifestCallback(TrainerCallback):
    """Once the trainer has written a checkpoint, records its files' sizes and hashes (`cftune.runs`), so a
    resume can tell a complete checkpoint from one a kill, a full disk or a damaged file spoiled."""

    def on_save(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            write_manifest(Path(args.output_dir) / f"checkpoint-{state.global_step}")


class EtaCallback(TrainerCallback):
    """Logs how long training will take, measured on the steps run so far: after the second step of this
    process (the first pays one-time setup) and then at every quarter. Dev evaluations and checkpoint saves
    between steps are included, so the estimate is of the whole stage."""

    def __init__(self) -> None:
        self.first_step = self.started = None
        self.reported: set[int] = set()

    def on_step_end(self, args, state, control, **kwargs):
        step, total = state.global_step, state.max_steps
        if self.first_step is None:  # clock starts after one step here, so setup does not count
            self.first_step, self.started = step, time.perf_counter()
            return
        done = step - self.first_step
        quarter = 4 * step // total
        if not state.is_world_process_zero or step >= total or (done != 1 and quarter in self.reported):
            return
        self.reported.add(quarter)
        per_step = (time.perf_counter() - self.started) / done
        log.info("step %d/%d: %.1f s per step, about %s to go", step, total, per_step,
                 format_duration(per_step * (total - step)))


def search_prompts(model, config: TrainConfig, columns: list[str]) -> dict[str, str]:
    """Give the model its "query" and "document" prompts; return what goes before each training column's texts
    (a model that leaves its prompt out of the mean reads plain text: its template's prefix goes there too)."""
    named = {"query": config.query_prompt, "document": config.document_prompt}
    full = set_named_prompts(model, named if any(named.values()) else {})
    prefix = model.prompts.get(TEMPLATE_PROMPT, "")
    if not (full or prefix):
        return {}
    return {column: full.get("query" if column == "anchor" else "document", prefix) for column in columns}


def data_origin(spec: str, data_dir: str | None, source: str) -> dict[str, str]:
    """How a model card names a training set: by hub id where it came from the hub."""
    from cftune.data import HUB_DATASET, NLI_HUB

    if spec == "nli":
        local = existing_data_dir(data_dir) is not None  # a stand-in is not the hub's data: no id
        return {"name": "SimCSE NLI triplets"} | ({} if local else {"id": NLI_HUB[0]})
    if HUB_DATASET.fullmatch(spec) and not Path(spec).exists():
        return {"name": spec, "id": spec.partition(":")[0]}
    return {"name": Path(source).name}


def describe_origin(model, config: TrainConfig, sources: dict[str, str]) -> None:
    """The model card's metadata (the hub reads it): the base model's hub id, and the training data by hub id
    where it came from the hub. Set after training, on the entries the trainer filled in with what it saw (one
    per training set, named by its setting when there are several)."""
    from cftune.aliases import hub_id_of

    card = model.model_card_data
    card.base_model = hub_id_of(config.model)
    origins = {name: data_origin(getattr(config, name), config.data_dir, source) for name, source in sources.items()}
    for entry in card.train_datasets:
        entry.update(origins.get(entry.get("name"), origins["data"]))
    card.datasets = [origin["id"] for origin in origins.values() if "id" in origin]  # the metadata's hub ids


def load_training_sets(config: TrainConfig) -> dict[str, Triplets]:
    """The training rows by the setting that names them: ``data``, and ``similarity_data`` when the run has one
    (read with cftune's column names: ``columns`` is about ``data``)."""
    sets = {"data": load_training_data(config.data, config.data_dir, form=training_format(config),
                                       skip_bad_rows=config.skip_bad_rows, max_rows=config.max_rows)}
    if config.similarity_data:
        sets["similarity_data"] = load_training_data(config.similarity_data, config.data_dir,
                                                     skip_bad_rows=config.skip_bad_rows, max_rows=config.max_rows)
    for triplets in sets.values():
        if triplets.skipped:
            log.warning("skipped %d bad rows of %s:\n  %s", len(triplets.skipped), triplets.source,
                        "\n  ".join(triplets.skipped))
    return sets


def trained_columns(config: TrainConfig, triplets: Triplets) -> dict[str, list]:
    """The columns a run trains on: without hard negatives, the negative columns are left out (in-batch
    negatives only)."""
    return {name: texts for name, texts in triplets.columns.items()
            if config.hard_negatives or not name.startswith("negative")}


def train(config: TrainConfig, out: str | Path, *, resume: bool = False, callbacks: tuple = ()) -> Path:
    """Fine-tune ``config.model`` on triplets; returns the run folder holding the best model.

    Everything that can be checked is checked before the folder is touched: the settings, the folder
    (new, empty or this run's), the training rows and the dev set. Then the folder is locked for this
    process alone. ``callbacks``: extra transformers ``TrainerCallback``s (timers, custom logging).
    """
    validate(config)  # load_config did, but a TrainConfig may also be built in Python
    check_trackers_installed(config.report_to)
    if config.torch_compile == "true" and not torch.cuda.is_available() and not has_cpp_compiler():
        raise ConfigError("torch_compile: true needs a C++ compiler on a CPU (g++, clang++ or $CXX); none found")
    out = Path(out)
    check_run_target(out, config, resume)
    sets = load_training_sets(config)
    # every process needs a full batch (the last partial one is dropped): fewer rows would train nothing
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    for triplets in sets.values():
        if len(triplets) < config.batch_size * world_size:
            raise ConfigError(f"{triplets.source}: {len(triplets)} usable rows (after max_rows and skipped bad "
                              f"rows), fewer than one batch: batch_size={config.batch_size}"
                              + (f" x {world_size} processes" if world_size > 1 else ""))
    steps = training_steps(config, [len(triplets) for triplets in sets.values()], world_size)
    warmup = warmup_steps(config, steps)
    if warmup >= steps:
        log.warning("warmup_steps=%d is not fewer than the run's %d steps: the learning rate never reaches %g "
                    "(leave warmup_steps out for warmup_ratio=%g of the steps)", warmup, steps,
                    config.learning_rate, config.warmup_ratio)
    dev = load_sts_dev(config.data_dir) if config.eval_steps > 0 else None  # short runs skip the dev set
    if config.teacher:
        check_teacher(config.teacher, config.teacher_prompt)
    one_writer = FolderLock(out) if int(os.environ.get("RANK", "0")) == 0 else contextlib.nullcontext()
    with one_writer:
        try:
            return _train_in(out, config, resume, sets, dev, callbacks, (steps, warmup))
        except (OSError, RuntimeError) as err:
            if is_disk_full(err):
                raise disk_full_error(out, "continue with `resume` (complete checkpoints are kept)") from err
            raise


def _train_in(out: Path, config: TrainConfig, resume: bool, sets: dict[str, Triplets], dev, callbacks: tuple,
              schedule: tuple[int, int]) -> Path:
    """The training itself, in a run folder this process holds, as named phases; ``sets``: the training rows by
    setting (``load_training_sets``); ``schedule``: (steps, warm-up steps)."""
    from sentence_transformers import SentenceTransformerTrainer

    steps, warmup = schedule
    run, checkpoint = open_run(out, config, resume, steps)
    columns = {name: trained_columns(config, triplets) for name, triplets in sets.items()}
    dataset, distillation, teacher_seconds = training_dataset(config, columns)
    rows = sum(len(triplets) for triplets in sets.values())
    for name, triplets in sets.items():
        log.info("%s: %d rows of %s (columns %s)", name, len(triplets), triplets.source, list(columns[name]))
    log.info("training: %d steps of %d, %d of them warm-up", steps, config.batch_size, warmup)
    model, column_prompts, projection = build_model(config, columns, distillation)
    # a resumed run's checkpoint already holds the warmed-up weights
    mntp = mntp_phase(model, config, columns["data"]) if config.mntp_steps and checkpoint is None else {}
    evaluator = dev_evaluator(dev)
    args = training_arguments(config, run, schedule, column_prompts, evaluator is not None, model.device)
    trainer = SentenceTransformerTrainer(
        model=model, args=args, train_dataset=dataset,
        loss=build_loss(model, config, args.world_size, distillation), evaluator=evaluator,
        callbacks=[JsonLogCallback(run.log), EtaCallback(), ManifestCallback(), *callbacks],
    )
    # The model card's usage example encodes its sentences at every save; at checkpoints that is a pass through the
    # model (the first one cold, or compiling for no-grad) for a card nobody reads: once, at the final save.
    model.model_card_data.generate_widget_examples = False  # after the trainer took its widget examples
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    log.info("%s fine-tuning: %.1fM trainable parameters", config.finetune, trainable / 1e6)
    started = time.perf_counter()
    with packed_batches(model, wants_packing(config, model)) as packed:
        if packed:
            log.info("packing: each batch's texts in rows of up to %d tokens, not padded", ROW_TOKENS)
        trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    seconds = time.perf_counter() - started
    steps_run = trainer.state.global_step - (int(checkpoint.name.rsplit("-", 1)[1]) if checkpoint else 0)
    if trainer.is_world_process_zero():
        best = trainer.state.best_metric
        main = sets["data"]
        summary = {"best_dev_spearman_x100": None if best is None else best * 100,
                   "best_checkpoint": trainer.state.best_model_checkpoint, "steps": trainer.state.global_step,
                   "warmup_steps": warmup, "rows": rows, "skipped_rows": sum(len(t.skipped) for t in sets.values()),
                   "data": main.source, "skipped": [s for t in sets.values() for s in t.skipped],
                   **({"similarity_data": sets["similarity_data"].source,
                       "similarity_rows": len(sets["similarity_data"])} if "similarity_data" in sets else {}),
                   # of this invocation only: a resumed run's earlier part is not counted
                   "train_seconds": round(seconds, 1), "resumed_from": str(checkpoint) if checkpoint else None,
                   "machine": machine(), "design": EmbedderDesign.of(model).describe(),
                   "finetune": config.finetune, "trainable_parameters": trainable,
                   "rows_per_second": round(steps_run * config.batch_size * args.world_size / seconds, 2),
                   "peak_rss_gib": round(peak_rss_gib(), 2), **mntp,
                   **({"peak_gpu_memory_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2)}
                      if model.device.type == "cuda" else {}),
                   **({"teacher": config.teacher, "teacher_seconds": round(teacher_seconds, 1),
                       "teacher_texts": distillation.texts, "teacher_texts_encoded": distillation.encoded,
                       "projection": projection} if distillation is not None else {})}
        save_run(model, config, run, {name: triplets.source for name, triplets in sets.items()}, summary)
    return out


def open_run(out: Path, config: TrainConfig, resume: bool, steps: int) -> tuple[RunFolder, Path | None]:
    """Mark the folder as a run, find the checkpoint a resume continues (its log cut back to it), and record
    the settings."""
    mark_run_folder(out)
    run = RunFolder(out)
    checkpoint = last_complete_checkpoint(out, steps) if resume else None
    if resume and checkpoint is None:
        log.warning("--resume: no checkpoint in %s, starting from scratch", run.checkpoints)
    if checkpoint:
        cut_log(run.log, checkpoint)
    else:
        run.log.unlink(missing_ok=True)
    write_atomic(run.config, yaml.safe_dump(config_to_dict(config), sort_keys=False))
    return run, checkpoint


def training_dataset(config: TrainConfig, columns: dict[str, dict[str, list]]):
    """The rows as a datasets.Dataset, or a DatasetDict by setting when there are several sets; with a teacher,
    its vectors of every text too (cached once, on disk), and each row's number as its label (the loss looks its
    teacher vectors up by it)."""
    import datasets

    if len(columns) > 1:
        return datasets.DatasetDict({name: datasets.Dataset.from_dict(c) for name, c in columns.items()}), None, 0.0
    dataset = datasets.Dataset.from_dict(columns["data"])
    if not config.teacher:
        return dataset, None, 0.0
    from cftune import distill

    started = time.perf_counter()
    distillation = distill.prepare(config, columns["data"])
    return dataset.add_column("label", list(range(len(dataset)))), distillation, time.perf_counter() - started


def training_prompts(model, config: TrainConfig, columns: dict[str, dict[str, list]]) -> dict:
    """What goes before each column's texts (sentence-transformers' training ``prompts``): the search prompts
    on ``data``; on ``similarity_data`` no named prompt, only the template's prefix where the model reads plain
    text. With several sets, by set (a set left out gets no prompt)."""
    prompts = search_prompts(model, config, [c for c in columns["data"] if c != "score"])
    if len(columns) == 1:
        return prompts
    prefix = model.prompts.get(TEMPLATE_PROMPT, "")
    by_set = {"data": prompts, "similarity_data": {c: prefix for c in columns["similarity_data"]} if prefix else {}}
    return {name: set_prompts for name, set_prompts in by_set.items() if set_prompts}


def build_model(config: TrainConfig, columns: dict[str, dict[str, list]], distillation) -> tuple[Any, dict, bool]:
    """The embedder to train: its design, reading length, search prompts, a fitted map into a teacher's space
    (embedding distillation across sizes), and what trains (LoRA or the body). Returns it, the training
    prompts (``training_prompts``), and whether a map was added."""
    torch.manual_seed(config.seed)
    model = load_embedder(config.model, config.design)
    model.max_seq_length = config.max_length
    model.model_card_data.add_tags("cftune")
    column_prompts = training_prompts(model, config, columns)
    projection = False
    if distillation is not None:
        from cftune import distill

        projection = distill.add_projection(model, distillation, columns["data"], config)
    if config.finetune == "full":
        freeze_token_embeddings(model)
    else:
        add_lora(model, config)
    if wants_compile(config, model):
        log.info("torch_compile: %d transformer blocks, compiled at the first step", compile_blocks(model))
    return model, column_prompts, projection


def mntp_phase(model, config: TrainConfig, columns: dict[str, list]) -> dict:
    """The masked next-token warm-up on the training texts (``cftune.mntp``); its losses and time."""
    from cftune.mntp import mntp_warmup

    started = time.perf_counter()
    losses = mntp_warmup(model, list(dict.fromkeys(t for column in columns.values() for t in column)), config)
    return {"mntp_first_loss": round(losses[0], 4), "mntp_last_loss": round(losses[-1], 4),
            "mntp_seconds": round(time.perf_counter() - started, 1)}


def dev_evaluator(dev):
    """STS-B dev Spearman (the best checkpoint is kept by it); None where the run has no dev set."""
    from sentence_transformers.sentence_transformer.evaluation import EmbeddingSimilarityEvaluator

    if dev is None:  # short runs (ablations) skip the dev set and keep the last step
        return None
    return EmbeddingSimilarityEvaluator(dev.sentence1, dev.sentence2, [s / 5 for s in dev.scores], batch_size=64,
                                        name=DEV_NAME, main_similarity="cosine")


def training_arguments(config: TrainConfig, run: RunFolder, schedule: tuple[int, int], column_prompts: dict,
                       has_dev: bool, device):
    """The recipe as sentence-transformers' training arguments."""
    from sentence_transformers import SentenceTransformerTrainingArguments
    from sentence_transformers.base.sampler import BatchSamplers, MultiDatasetBatchSamplers

    steps, warmup = schedule
    return SentenceTransformerTrainingArguments(
        output_dir=str(run.checkpoints),
        prompts=column_prompts or None,
        max_steps=steps,
        per_device_train_batch_size=config.batch_size,
        learning_rate=config.learning_rate,
        warmup_steps=warmup,
        weight_decay=config.weight_decay,
        lr_scheduler_type="cosine",
        bf16=resolve_precision(config.precision, device) == "bfloat16",
        use_cpu=not torch.cuda.is_available(),  # HF refuses bf16 on CPU unless told it is a CPU run
        gradient_checkpointing=config.gradient_checkpointing,
        # A duplicate text in a batch would be a false negative for its twin's anchor.
        batch_sampler=BatchSamplers.NO_DUPLICATES,
        # several training sets (similarity_data) take turns, a batch each: neither is drowned by the other's size
        multi_dataset_batch_sampler=MultiDatasetBatchSamplers.ROUND_ROBIN,
        eval_strategy="steps" if has_dev else "no",
        eval_steps=config.eval_steps or None,
        save_strategy="steps",
        save_steps=config.save_steps,
        save_total_limit=2,
        load_best_model_at_end=has_dev,
        metric_for_best_model=DEV_METRIC if has_dev else None,
        greater_is_better=True,
        logging_steps=config.logging_steps,
        seed=config.seed,
        data_seed=config.seed,
        dataloader_drop_last=True,
        dataloader_num_workers=config.dataloader_workers,
        report_to=config.report_to or "none",
    )


def save_run(model, config: TrainConfig, run: RunFolder, sources: dict[str, str], summary: dict) -> None:
    """The trained model (the best checkpoint, or without a dev set the last) with its card, curve and
    summary; ``sources``: where each training set was read from, by setting."""
    describe_origin(model, config, sources)
    model.model_card_data.generate_widget_examples = True  # the card's usage example, with its similarities
    model.save(str(run.path))  # adapter + template + pooling
    plot_training_curve(run.log, run.curve)
    write_atomic(run.summary, json.dumps(summary, indent=2) + "\n")
    write_model_card_section(run.path, model_card_section(config_to_dict(config), summary))

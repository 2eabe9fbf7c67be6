"""Contrastive fine-tuning: LoRA + InfoNCE on triplets, assembled from sentence-transformers' trainer.

What we use as is: SentenceTransformerTrainer (AdamW, cosine schedule with warmup, checkpoints, resume,
bf16 autocast, torchrun/accelerate), MultipleNegativesRankingLoss and its cached variant (the InfoNCE of
the paper), the no-duplicates batch sampler, EmbeddingSimilarityEvaluator on STS-B dev, and peft's LoRA.
What we add: the recipe -> trainer mapping, a JSON-lines log with a PNG curve, and the run folder layout:

    runs/NAME/config.yaml        the resolved recipe
    runs/NAME/checkpoints/       trainer checkpoints (resume from the last one)
    runs/NAME/train_log.jsonl    one JSON object per logged step (loss, lr, dev Spearman)
    runs/NAME/training_curve.png loss and dev Spearman over steps
    runs/NAME/                   the best model: a sentence-transformers folder with the LoRA adapter
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from pathlib import Path

import torch
import yaml
from transformers import TrainerCallback

from cftune.config import ConfigError, TrainConfig, config_to_dict
from cftune.data import load_sts_dev, load_training_data
from cftune.models import load_embedder, resolve_precision
from cftune.reports import machine, plot_training_curve, write_atomic

log = logging.getLogger(__name__)
DEV_NAME = "sts-dev"
DEV_METRIC = f"eval_{DEV_NAME}_spearman_cosine"


def build_loss(model, config: TrainConfig, world_size: int = 1):
    """InfoNCE with temperature T is cross-entropy over cosine / T: MNRL with scale = 1 / T.

    Hard negatives are the dataset's third column (drop it to switch them off); penalising hard negatives
    is MNRL's hardness weighting; gradient caching is its cached variant; with several processes the
    negatives are gathered from all of them.
    """
    from sentence_transformers.sentence_transformer.losses import (
        CachedMultipleNegativesRankingLoss,
        MultipleNegativesRankingLoss,
    )

    kwargs = {"scale": 1.0 / config.temperature, "gather_across_devices": world_size > 1}
    if config.hardness:
        kwargs |= {"hardness_mode": "hard_negatives" if config.hard_negatives else "in_batch_negatives",
                   "hardness_strength": config.hardness}
    if config.gradient_cache:
        return CachedMultipleNegativesRankingLoss(model, mini_batch_size=config.mini_batch_size, **kwargs)
    return MultipleNegativesRankingLoss(model, **kwargs)


def add_lora(model, config: TrainConfig) -> None:
    """Attach a fresh LoRA adapter to the transformer body; peft freezes every base weight."""
    from peft import LoraConfig, TaskType

    targets = config.lora.target_modules
    targets = targets if targets == "all-linear" else [t.strip() for t in targets.split(",") if t.strip()]
    if targets != "all-linear":
        names = {name.rsplit(".", 1)[-1] for name, _ in model[0].auto_model.named_modules()}
        missing = [t for t in targets if t not in names]
        if missing:
            raise ConfigError(f"lora.target_modules {missing} not in this model; linear layers named e.g. "
                              f"{sorted(n for n in names if 'proj' in n or 'dense' in n)[:12]}")
    model.add_adapter(LoraConfig(task_type=TaskType.FEATURE_EXTRACTION, r=config.lora.r,
                                 lora_alpha=config.lora.alpha, lora_dropout=config.lora.dropout,
                                 target_modules=targets))


class JsonLogCallback(TrainerCallback):
    """Appends each trainer log (loss, lr, dev Spearman) to train_log.jsonl, one JSON object a line."""

    def __init__(self, path: Path):
        self.path = path

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.is_world_process_zero and logs:
            with self.path.open("a", encoding="utf-8") as handle:
                handle.write(json.dumps({"step": state.global_step, **logs}) + "\n")


def last_checkpoint(out: Path) -> str | None:
    checkpoints = sorted((out / "checkpoints").glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[-1]))
    return str(checkpoints[-1]) if checkpoints else None


def train(config: TrainConfig, out: str | Path, *, resume: bool = False, callbacks: tuple = ()) -> Path:
    """Fine-tune ``config.model`` on triplets; returns the run folder holding the best model.

    ``callbacks``: extra transformers ``TrainerCallback``s (timers, custom logging).
    """
    import datasets
    from sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments
    from sentence_transformers.base.sampler import BatchSamplers
    from sentence_transformers.sentence_transformer.evaluation import EmbeddingSimilarityEvaluator

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    resume_from = last_checkpoint(out) if resume else None
    if resume and resume_from is None:
        log.warning("--resume: no checkpoint in %s, starting from scratch", out / "checkpoints")
    if not resume_from:
        (out / "train_log.jsonl").unlink(missing_ok=True)
    write_atomic(out / "config.yaml", yaml.safe_dump(config_to_dict(config), sort_keys=False))

    torch.manual_seed(config.seed)
    model = load_embedder(config.model, prompt=config.prompt)
    model.max_seq_length = config.max_length
    add_lora(model, config)

    triplets = load_training_data(config.data, config.data_dir, skip_bad_rows=config.skip_bad_rows,
                                  max_rows=config.max_rows)
    if triplets.skipped:
        log.warning("skipped %d bad rows of %s, first: %s", len(triplets.skipped), triplets.source,
                    triplets.skipped[0])
    columns = dict(triplets.columns)
    if not config.hard_negatives:
        columns.pop("negative", None)
    train_dataset = datasets.Dataset.from_dict(columns)
    log.info("training on %d rows of %s (columns %s)", len(train_dataset), triplets.source, list(columns))

    evaluator = None
    if config.eval_steps > 0:  # short runs (ablations) skip the dev set and keep the last step
        dev = load_sts_dev(config.data_dir)
        evaluator = EmbeddingSimilarityEvaluator(dev.sentence1, dev.sentence2, [s / 5 for s in dev.scores],
                                                 batch_size=64, name=DEV_NAME, main_similarity="cosine")
    bf16 = resolve_precision(config.precision, model.device) == "bfloat16"
    args = SentenceTransformerTrainingArguments(
        output_dir=str(out / "checkpoints"),
        max_steps=config.max_steps,
        per_device_train_batch_size=config.batch_size,
        learning_rate=config.learning_rate,
        warmup_steps=config.warmup_steps,
        weight_decay=config.weight_decay,
        lr_scheduler_type="cosine",
        bf16=bf16,
        use_cpu=not torch.cuda.is_available(),  # HF refuses bf16 on CPU unless told it is a CPU run
        gradient_checkpointing=config.gradient_checkpointing,
        # A duplicate text in a batch would be a false negative for its twin's anchor.
        batch_sampler=BatchSamplers.NO_DUPLICATES,
        eval_strategy="steps" if evaluator else "no",
        eval_steps=config.eval_steps or None,
        save_strategy="steps",
        save_steps=config.save_steps,
        save_total_limit=2,
        load_best_model_at_end=evaluator is not None,
        metric_for_best_model=DEV_METRIC if evaluator else None,
        greater_is_better=True,
        logging_steps=config.logging_steps,
        seed=config.seed,
        data_seed=config.seed,
        dataloader_drop_last=True,
        report_to="none",
    )
    trainer = SentenceTransformerTrainer(
        model=model, args=args, train_dataset=train_dataset,
        loss=build_loss(model, config, args.world_size), evaluator=evaluator,
        callbacks=[JsonLogCallback(out / "train_log.jsonl"), *callbacks],
    )
    started = time.perf_counter()
    trainer.train(resume_from_checkpoint=resume_from)
    seconds = time.perf_counter() - started
    if trainer.is_world_process_zero():
        model.save(str(out))  # best (or, without dev set, last) checkpoint: adapter + template + pooling
        plot_training_curve(out / "train_log.jsonl", out / "training_curve.png")
        best = trainer.state.best_metric
        summary = {"best_dev_spearman_x100": None if best is None else best * 100,
                   "best_checkpoint": trainer.state.best_model_checkpoint, "steps": trainer.state.global_step,
                   "rows": len(train_dataset), "skipped_rows": len(triplets.skipped), "data": triplets.source,
                   # of this invocation only: a resumed run's earlier part is not counted
                   "train_seconds": round(seconds, 1), "resumed_from": resume_from, "machine": machine()}
        write_atomic(out / "train_summary.json", json.dumps(summary, indent=2) + "\n")
    return out


def merge_lora(body) -> None:
    """Fold every LoRA layer into its base weight (W += B A * alpha / r) and drop the adapter."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    for name, module in list(body.named_modules()):
        if isinstance(module, BaseTunerLayer):
            module.merge()
            parent, _, child = name.rpartition(".")
            setattr(body.get_submodule(parent) if parent else body, child, module.get_base_layer())
    body._hf_peft_config_loaded = False  # save_pretrained writes full weights again, not an adapter
    del body.peft_config
    # transformers re-applies, on save, the key renamings it did on load; those included the adapter's
    # "base_model.model." prefix, which no longer exists.
    body._weight_conversions = None


def export(run: str | Path, out: str | Path, *, merge: bool = False) -> Path:
    """A trained run -> a standalone sentence-transformers folder (adapter kept, or merged into the weights)."""
    model = load_embedder(str(run))
    if merge:
        if not getattr(model[0].auto_model, "peft_config", None):
            raise ConfigError(f"{run} has no LoRA adapter to merge")
        merge_lora(model[0].auto_model)
    out = Path(out)
    tmp = out.with_name(f".{out.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save(str(tmp))
    shutil.rmtree(out, ignore_errors=True)
    tmp.replace(out)  # atomic: an interrupted export leaves no half-written model folder
    return out

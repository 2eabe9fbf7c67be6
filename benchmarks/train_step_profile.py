"""Where a training step's time goes, on this machine: one step of a recipe split into its phases.

The phases of a sentence-transformers training step, run by hand with cftune's own pieces (the recipe's model,
design, LoRA and loss), each timed on its own:

  prepare : the batch's texts through the template and the tokenizer (``model.preprocess``), per column
  forward : the body and pooling of every column, and the loss (under bf16 autocast where the CPU has it)
  backward: ``loss.backward()``
  optimizer: AdamW's step and zeroing the gradients

It leaves out what the trainer adds around them (its sampler, collator, logging and callbacks); the full
trainer's speed is ``benchmarks/train_throughput.py``. A model-FLOP figure for the forward pass (2 x the body's
parameters outside the token embeddings x the tokens in the batch) gives its arithmetic rate.

Usage: python benchmarks/train_step_profile.py [--recipe cpu-gemma3-270m] [--data-dir ../shared/data]
       [--steps 3] [--batch N]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from cftune.config import load_config
from cftune.data import load_training_data
from cftune.design import lm_body
from cftune.encoding import autocast, resolve_precision
from cftune.io import machine
from cftune.models import load_embedder
from cftune.training import add_lora, build_loss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default="cpu-gemma3-270m")
    parser.add_argument("--data-dir", default="../shared/data")
    parser.add_argument("--steps", type=int, default=3, help="timed steps, after one untimed warm-up step")
    parser.add_argument("--batch", type=int, help="triplets per step (default: the recipe's)")
    args = parser.parse_args()

    config = load_config(args.recipe, [f"data_dir={args.data_dir}"])
    batch = args.batch or config.batch_size
    rows = load_training_data(config.data, config.data_dir, max_rows=batch * (args.steps + 1))
    torch.manual_seed(config.seed)
    model = load_embedder(config.model, config.design)
    model.max_seq_length = config.max_length
    add_lora(model, config)
    loss_fn = build_loss(model, config)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=config.learning_rate)
    precision = resolve_precision(config.precision, model.device)
    body = lm_body(model)
    embeddings_size = body.get_input_embeddings().weight.numel()
    dense = sum(p.numel() for p in body.parameters()) - embeddings_size  # the matmul weights a token meets
    model.train()
    phases: dict[str, list[float]] = {"prepare": [], "forward": [], "backward": [], "optimizer": []}
    tokens: list[int] = []
    for step in range(args.steps + 1):
        texts = {name: column[step * batch:(step + 1) * batch] for name, column in rows.columns.items()}
        started = time.perf_counter()
        features = [model.preprocess(column) for column in texts.values()]
        prepared = time.perf_counter()
        with autocast(precision, model.device):
            vectors = [model(f)["sentence_embedding"] for f in features]
            loss = loss_fn.compute_loss_from_embeddings(vectors, None)
        forward = time.perf_counter()
        loss.backward()
        backward = time.perf_counter()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        done = time.perf_counter()
        if step == 0:
            continue  # the first step pays one-time costs
        for name, seconds in zip(phases, (prepared - started, forward - prepared, backward - forward,
                                          done - backward), strict=True):
            phases[name].append(seconds)
        tokens.append(sum(int(f["attention_mask"].sum()) for f in features))
    step_s = sum(statistics.median(v) for v in phases.values())
    forward_flop = 2 * dense * statistics.median(tokens)
    result = {"recipe": args.recipe, "model": config.model, "batch": batch, "precision": precision,
              "machine": machine(), "timed_steps": args.steps, "tokens_per_step": statistics.median(tokens),
              "median_seconds": {name: round(statistics.median(v), 3) for name, v in phases.items()},
              "share": {name: round(statistics.median(v) / step_s, 3) for name, v in phases.items()},
              "triplets_per_second": round(batch / step_s, 2),
              "forward_gflop": round(forward_flop / 1e9, 1),
              "forward_gflop_per_second": round(forward_flop / 1e9 / statistics.median(phases["forward"]), 1)}
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

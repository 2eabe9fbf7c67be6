"""Training throughput and peak memory: cftune's training vs the paper's training approach.

Same model, same NLI triplets, same batch (7 triplets, as in the paper), same LoRA (r 8, q_proj/v_proj).
Each configuration runs in a fresh child process, so its peak RSS is its own:

  paper  : every text padded to 150 tokens, three separate forward passes (anchor, positive, negative)
           through the causal LM with its head and output_hidden_states, last position, InfoNCE, AdamW, fp32
  cftune : `cftune.training.train` (sentence-transformers trainer, body only, dynamic padding,
           bf16 autocast where the CPU supports it)
  plus     peak RSS of cftune at batch 16 (plain loss) vs batch 512 with gradient caching (mini-batch 16).

Usage: python benchmarks/train_throughput.py [--model gemma3-270m] [--data-dir ../shared/data]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import resource
import tempfile
import time


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # Linux reports KiB


def paper_loop(model_name: str, data_dir: str, batch: int, steps: int, warmup: int) -> dict:
    """A faithful re-implementation of the paper's training step (not its code: it has no offline copy)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from cftune.data import load_training_data
    from cftune.sources import resolve_source

    source, trust_remote_code = resolve_source(model_name)
    tokenizer = AutoTokenizer.from_pretrained(source)
    tokenizer.padding_side = "left"  # so position -1 is the EOS they append
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32, trust_remote_code=trust_remote_code)
    model = get_peft_model(model, LoraConfig(r=8, lora_alpha=32, lora_dropout=0.1,
                                             target_modules=["q_proj", "v_proj"]))
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=5e-5, weight_decay=1e-4)
    rows = load_training_data("nli", data_dir, max_rows=batch * (steps + warmup))

    def embed(texts):
        inputs = tokenizer([t + tokenizer.eos_token for t in texts], padding="max_length", max_length=150,
                           truncation=True, return_tensors="pt")
        return model(**inputs, output_hidden_states=True).hidden_states[-1][:, -1, :]

    model.train()
    for step in range(steps + warmup):
        if step == warmup:
            start = time.perf_counter()
        sl = slice(step * batch, (step + 1) * batch)
        a, p, n = (embed(rows.columns[c][sl]) for c in ("anchor", "positive", "negative"))
        scores = torch.nn.functional.cosine_similarity(a[:, None], torch.cat([p, n])[None], dim=-1) / 0.05
        loss = torch.nn.functional.cross_entropy(scores, torch.arange(len(a)))
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    seconds = time.perf_counter() - start
    return {"triplets_per_s": batch * steps / seconds, "peak_rss_gib": peak_rss_gib()}


def cftune_train(model_name: str, data_dir: str, batch: int, steps: int, warmup: int, **settings) -> dict:
    from transformers import TrainerCallback

    from cftune.config import load_config
    from cftune.training import train

    overrides = {"model": model_name, "data_dir": data_dir, "batch_size": batch, "max_steps": steps + warmup,
                 "warmup_steps": 1, "eval_steps": 0, "save_steps": 10**6, "logging_steps": 1,
                 "max_rows": 2 * batch * (steps + warmup), **settings}  # slack: the no-duplicates sampler skips repeats
    durations = []

    class StepTimer(TrainerCallback):  # per-step wall times, so the warm-up steps can be left out
        def on_step_begin(self, args, state, control, **kwargs):
            self.began = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            durations.append(time.perf_counter() - self.began)

    with tempfile.TemporaryDirectory() as out:
        train(load_config(overrides=overrides), out, callbacks=(StepTimer(),))
    timed = durations[warmup:]
    return {"triplets_per_s": batch * len(timed) / sum(timed), "peak_rss_gib": peak_rss_gib()}


def run_child(fn, *args, **kwargs) -> dict:
    """Run one configuration in a fresh process: its peak RSS is not polluted by the others."""
    with mp.get_context("spawn").Pool(1) as pool:
        return pool.apply(fn, args, kwargs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="gemma3-270m")
    parser.add_argument("--data-dir", default="../shared/data")
    parser.add_argument("--paper-steps", type=int, default=2, help="timed steps of the (slow) paper loop")
    parser.add_argument("--steps", type=int, default=10, help="timed steps of cftune")
    args = parser.parse_args()

    from cftune.io import machine

    print(f"model {args.model}, batch 7 NLI triplets, {machine()}", flush=True)
    paper = run_child(paper_loop, args.model, args.data_dir, 7, args.paper_steps, 1)
    print(f"paper approach: {paper}", flush=True)
    ours = run_child(cftune_train, args.model, args.data_dir, 7, args.steps, 2)
    print(f"cftune        : {ours}", flush=True)
    small = run_child(cftune_train, args.model, args.data_dir, 16, 2, 1)
    big = run_child(cftune_train, args.model, args.data_dir, 512, 1, 0, gradient_cache=True, mini_batch_size=16)

    print("\n| configuration | triplets/s | peak RSS (GiB) |\n|---|---:|---:|")
    print(f"| paper approach, batch 7 (pad 150, 3 passes, LM head, fp32) | {paper['triplets_per_s']:.2f} "
          f"| {paper['peak_rss_gib']:.2f} |")
    print(f"| cftune, batch 7 | {ours['triplets_per_s']:.2f} | {ours['peak_rss_gib']:.2f} |")
    print(f"| cftune, batch 16, plain loss | {small['triplets_per_s']:.2f} | {small['peak_rss_gib']:.2f} |")
    print(f"| cftune, batch 512, gradient cache (mini-batch 16) | {big['triplets_per_s']:.2f} "
          f"| {big['peak_rss_gib']:.2f} |")
    print(f"\ncftune vs paper: {ours['triplets_per_s'] / paper['triplets_per_s']:.1f}x triplets/s, "
          f"{ours['peak_rss_gib'] / paper['peak_rss_gib']:.2f}x peak memory; batch 512 cached uses "
          f"{big['peak_rss_gib'] / small['peak_rss_gib']:.2f}x the memory of batch 16 plain")


if __name__ == "__main__":
    main()

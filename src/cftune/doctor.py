"""`cftune doctor`: what this machine has and what cftune will do on it, before anything long is started.

It reports versions, the CPU and GPU, the precision `auto` picks, where models, cache and data are found,
and (with ``benchmark=True``) estimates the time of a full STS pass and of one training step from a few
passes through a randomly initialised Gemma 3 270M-shaped body: nothing is downloaded.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import math
import os
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass

PACKAGES = ("torch", "transformers", "sentence-transformers", "peft", "cftune")

# Measured with Gemma 3's tokenizer on ../shared/data (BOS and EOS included): the 9 STS test sets hold 27,641
# distinct sentences of 14.4 tokens on average, 23.9 with the eol prompt (encode sorts them by length, so
# batches carry almost no padding). Training batches are drawn at random and each column is padded to its
# longest text: with the eol prompt, batches of 32 NLI triplets pad to 63.8 (anchor), 33.0 (positive) and
# 32.0 (hard negative) tokens, 43 on average.
STS_SENTENCES = 27_641
STS_TOKENS = {"eol": 24, "none": 14}
TRAIN_TOKENS = 43

# Gemma 3 270M's transformer body (hf google/gemma-3-270m config.json). The vocabulary is small here: the
# token embeddings are a lookup, so their size does not change the time of a pass.
GEMMA3_270M = dict(hidden_size=640, intermediate_size=2048, num_hidden_layers=18, num_attention_heads=4,
                   num_key_value_heads=1, head_dim=256, vocab_size=1024)


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def usable_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def default_device() -> str:
    """The device sentence-transformers (and so load_embedder without --device) picks."""
    from sentence_transformers.util import get_device_name

    return get_device_name()


def _data_lines(data_dir: str | None) -> list[tuple[str, str]]:
    from cftune.data import DATA_DIR_ENV, STS_TASKS, STSB_DEV, resolve_data_dir

    folder = resolve_data_dir(data_dir)
    if folder is None:
        return [("data", f"no --data-dir and no ${DATA_DIR_ENV}: STS and NLI data come from the hub")]
    where = "--data-dir" if data_dir is not None else f"${DATA_DIR_ENV}"
    lines = [("data", f"{folder} (from {where})" + ("" if folder.is_dir() else ": NOT FOUND"))]
    tasks = [*STS_TASKS.values(), STSB_DEV]
    missing = [task.name for task in tasks if not (folder / task.local_file).is_file()]
    lines.append(("  sts/*.jsonl", f"{len(tasks) - len(missing)}/{len(tasks)} tasks (9 + STSBenchmark.dev)"
                  + (f"; missing: {', '.join(missing)}" if missing else "")))
    nli = sorted(p.name for p in (folder / "nli").glob("*.csv")) if (folder / "nli").is_dir() else []
    lines.append(("  nli/*.csv", ", ".join(nli) if nli else "none (train --data nli would read the hub)"))
    return lines


def _alias_lines() -> list[tuple[str, str]]:
    from cftune.aliases import ALIASES

    lines = []
    for name, alias in ALIASES.items():
        if alias.module is None:
            lines.append((f"  {name}", f"hub {alias.hub_id} (needs internet or the HF cache)"))
        elif importlib.util.find_spec(alias.module) is not None:  # find_spec: nothing is imported
            lines.append((f"  {name}", f"installed (PyPI {alias.package}, works offline)"))
        else:
            lines.append((f"  {name}", f"missing: {alias.pip_install}"))
    return lines


def busy_cores(seconds: float = 0.5) -> float | None:
    """How many cores other processes keep busy now, from /proc/stat over ``seconds`` (None where there is
    no /proc/stat). The load average would not do: it trails by a minute, so it still counts a job that
    just ended."""
    def times() -> list[int]:
        with open("/proc/stat", encoding="utf-8") as handle:
            return [int(value) for value in handle.readline().split()[1:]]

    try:
        before = times()
        time.sleep(seconds)
        after = times()
    except OSError:
        return None
    spent = [b - a for a, b in zip(before, after, strict=True)]
    idle = spent[3] + (spent[4] if len(spent) > 4 else 0)  # idle + iowait
    return (os.cpu_count() or 1) * (1 - idle / sum(spent)) if sum(spent) else 0.0


def facts(data_dir: str | None = None, device: str | None = None) -> list[tuple[str, str]]:
    """(label, value) lines describing this machine and cftune's setup on it."""
    import torch

    from cftune.aliases import cache_dir
    from cftune.encoding import resolve_precision
    from cftune.io import cpu_has_native_bf16, cpu_name

    device = device or default_device()
    rows = [("python", f"{platform.python_version()} ({platform.python_implementation()})")]
    rows += [(package, _version(package)) for package in PACKAGES]
    rows.append(("cpu", f"{cpu_name()} ({platform.machine()}), {os.cpu_count()} cores, {usable_cores()} usable, "
                        f"torch uses {torch.get_num_threads()} threads"))
    rows.append(("native bf16 on cpu", "yes (AVX512-BF16/AMX or Arm BF16)" if cpu_has_native_bf16()
                 else "no (bf16 would be emulated, slower than fp32)"))
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        rows.append(("gpu", f"{torch.cuda.device_count()} x {props.name}, {props.total_memory / 2**30:.0f} GiB, "
                            f"bf16 {'yes' if torch.cuda.is_bf16_supported() else 'no'}"))
    else:
        rows.append(("gpu", "none (CUDA not available)"))
    rows.append(("device", f"{device}" + (" (default)" if device == default_device() else "")))
    auto = resolve_precision("auto", device)
    how = " (inference loads cast the weights to bf16; training runs under autocast)" if auto == "bfloat16" else ""
    rows.append(("precision auto", f"{auto} on {device}{how}"))
    from cftune.int8 import fused_steps

    rows.append(("--quantize int8", "available, fused with torch.compile" if fused_steps() is not None
                 else "available, eager only (torch.compile cannot run here; see the warning above): slower"))
    cache = cache_dir()
    rows.append(("model cache", f"{cache} ($CFTUNE_CACHE; dequantized GGUF)"
                 + ("" if cache.is_dir() else ", not created yet")))
    from huggingface_hub import constants

    rows.append(("hub cache", f"{constants.HF_HUB_CACHE}"
                 + (" (offline: HF_HUB_OFFLINE set)" if constants.HF_HUB_OFFLINE else "")))
    rows += _data_lines(data_dir)
    rows.append(("model aliases", ""))
    rows += _alias_lines()
    return rows


# --------------------------------------------------------------------------------------------- micro-benchmark


@dataclass
class Estimate:
    device: str
    precision: str
    layers: str  # the body that was timed, in words
    batch_size: int
    tokens: int
    forward_s: float  # one inference pass of batch_size x tokens
    train_pass_s: float  # forward + backward of one column of batch_size x tokens, with LoRA adapters
    sts_pass_s: float  # the 9 STS tasks with the eol prompt
    sts_pass_none_s: float  # the same without a prompt (fewer tokens)
    train_step_s: float  # one step of batch_size triplets: 3 columns forward + backward

    def assumptions(self) -> list[str]:
        return [
            f"timed: one pass (after a warm-up pass) of a random-weight body ({self.layers}) on {self.device}, "
            f"{self.precision}, batch {self.batch_size} x {self.tokens} tokens; scaled linearly to other lengths",
            f"STS pass = {math.ceil(STS_SENTENCES / self.batch_size)} batches of {self.batch_size} "
            f"({STS_SENTENCES:,} distinct sentences, {STS_TOKENS['eol']} tokens on average with the eol prompt, "
            f"{STS_TOKENS['none']} without); model loading not included",
            f"training step = 3 columns (anchor, positive, hard negative) x {self.batch_size} texts padded to "
            f"{TRAIN_TOKENS} tokens on average (NLI, eol prompt), forward + backward with the cpu recipe's LoRA "
            "(r 8 on all linear layers); tokenizing, the loss and the optimizer step not included",
        ]


def _timed(step: Callable[[], object], sync: Callable[[], None]) -> float:
    """Seconds of the second run of ``step``: the first one pays for one-time setup (a first backward pass
    takes about 3x longer), which a long run does not."""
    step()
    sync()
    started = time.perf_counter()
    step()
    sync()
    return time.perf_counter() - started


def benchmark(*, hidden_size: int = GEMMA3_270M["hidden_size"],
              intermediate_size: int = GEMMA3_270M["intermediate_size"],
              num_hidden_layers: int = GEMMA3_270M["num_hidden_layers"],
              num_attention_heads: int = GEMMA3_270M["num_attention_heads"],
              num_key_value_heads: int = GEMMA3_270M["num_key_value_heads"],
              head_dim: int = GEMMA3_270M["head_dim"], vocab_size: int = GEMMA3_270M["vocab_size"],
              batch_size: int = 32, tokens: int = 32, lora_r: int = 8, lora_targets: str = "all-linear",
              precision: str = "auto", device: str | None = None) -> Estimate:
    """Estimate an STS pass and a training step from passes through a random Gemma 3-shaped body.

    The defaults are Gemma 3 270M's layer sizes and the cpu recipe's LoRA; tests pass a tiny body. Nothing
    is downloaded. Each figure is one timed pass after one warm-up pass, so the whole takes seconds.
    """
    import torch
    from transformers import Gemma3TextConfig, Gemma3TextModel

    from cftune.encoding import autocast, resolve_precision

    device = device or default_device()
    precision = resolve_precision(precision, device)
    config = Gemma3TextConfig(hidden_size=hidden_size, intermediate_size=intermediate_size,
                              num_hidden_layers=num_hidden_layers, num_attention_heads=num_attention_heads,
                              num_key_value_heads=num_key_value_heads, head_dim=head_dim, vocab_size=vocab_size,
                              query_pre_attn_scalar=head_dim, sliding_window=512, use_cache=False)
    torch.manual_seed(0)
    with torch.device(device):
        model = Gemma3TextModel(config)  # fp32 weights, as cftune loads them for training
    ids = torch.randint(3, vocab_size, (batch_size, tokens), device=device)
    mask = torch.ones_like(ids)
    sync = torch.cuda.synchronize if torch.device(device).type == "cuda" else (lambda: None)

    def forward():
        with torch.inference_mode(), autocast(precision, device):
            model(input_ids=ids, attention_mask=mask)

    model.eval()
    if precision == "bfloat16":
        model.bfloat16()  # as an inference load casts it (prepare_for_inference)
    forward_s = _timed(forward, sync)
    model.float()  # training keeps fp32 weights under autocast

    from peft import LoraConfig, TaskType

    # as cftune.training.add_lora does: peft freezes every base weight
    model.add_adapter(LoraConfig(task_type=TaskType.FEATURE_EXTRACTION, r=lora_r, lora_alpha=4 * lora_r,
                                 lora_dropout=0.0, target_modules=lora_targets))
    model.train()

    def train_pass():
        with autocast(precision, device):
            states = model(input_ids=ids, attention_mask=mask).last_hidden_state
        states[:, -1].float().pow(2).mean().backward()
        model.zero_grad(set_to_none=True)

    train_pass_s = _timed(train_pass, sync)
    per_token = math.ceil(STS_SENTENCES / batch_size) * forward_s / tokens  # an STS pass, per token of length
    return Estimate(
        device=str(device), precision=precision, batch_size=batch_size, tokens=tokens,
        layers=f"{num_hidden_layers} layers, hidden {hidden_size}, MLP {intermediate_size}, "
               f"{num_attention_heads} heads / {num_key_value_heads} kv x {head_dim}",
        forward_s=forward_s, train_pass_s=train_pass_s,
        sts_pass_s=per_token * STS_TOKENS["eol"], sts_pass_none_s=per_token * STS_TOKENS["none"],
        train_step_s=3 * train_pass_s * TRAIN_TOKENS / tokens,
    )


def doctor(*, data_dir: str | None = None, device: str | None = None, run_benchmark: bool = False,
           out: Callable[[str], object] = print) -> None:
    """Print the facts, and the micro-benchmark's estimates when asked."""
    rows = facts(data_dir, device)
    width = max(len(label) for label, _ in rows)
    for label, value in rows:
        out(f"{label:<{width}}  {value}".rstrip())
    if not run_benchmark:
        out("(cftune doctor --benchmark also estimates an STS pass and a training step)")
        return
    from cftune.config import load_config
    from cftune.io import format_duration

    busy = busy_cores()  # before the benchmark, which would itself count
    estimate = benchmark(device=device)
    recipe = load_config("cpu-gemma3-270m")
    out("")
    out("estimates for Gemma 3 270M (gemma3-270m):")
    cores = usable_cores()
    if estimate.device == "cpu" and busy is not None and busy > cores / 4:
        out(f"  WARNING: the CPU was busy ({busy:.1f} of {cores} cores in use by other processes): they share "
            "it, and torch's threads then wait for each other, so these times can be several times too long")
    out(f"  forward pass, batch {estimate.batch_size} x {estimate.tokens} tokens: {estimate.forward_s:.2f} s")
    out(f"  full STS pass (9 tasks): {format_duration(estimate.sts_pass_s)} with --prompt eol, "
        f"{format_duration(estimate.sts_pass_none_s)} with --prompt none")
    steps = recipe.max_steps or 0  # the recipe gives its steps
    out(f"  training step ({estimate.batch_size} triplets): {format_duration(estimate.train_step_s)}; "
        f"recipe cpu-gemma3-270m ({steps} steps of {recipe.batch_size}): "
        f"{format_duration(estimate.train_step_s * steps * recipe.batch_size / estimate.batch_size)}")
    out("  assumptions:")
    for line in estimate.assumptions():
        out(f"  - {line}")

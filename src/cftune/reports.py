"""Results as files people read: JSON for programs, a Markdown table for humans; written atomically."""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path

import torch

from cftune.evaluation import StsResult


def machine() -> str:
    return f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}" + (
        f", {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ", no GPU"
    )


def write_atomic(path: Path, text: str) -> None:
    """Write to a temporary file beside the target, then rename: readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def sts_table(result: StsResult) -> str:
    rows = ["| task | pairs | Spearman x100 |", "|---|---:|---:|"]
    rows += [f"| {task} | {result.pairs[task]} | {score:.2f} |" for task, score in result.scores.items()]
    rows.append(f"| **average** | | **{result.average:.2f}** |")
    return "\n".join(rows)


def sts_markdown(result: StsResult) -> str:
    meta = result.meta
    lines = [f"# STS: {meta.get('model', 'model')}", ""]
    if meta.get("command"):
        lines += ["Command:", "", f"    {meta['command']}", ""]
    lines += [
        f"- prompt: {json.dumps(result.prompt) if result.prompt is not None else 'n/a (encoder pooling)'}",
        f"- precision: {result.precision}",
        f"- {result.sentences_encoded} distinct sentences encoded in {result.encode_seconds:.1f} s",
    ]
    lines += [f"- {key}: {value}" for key, value in meta.items() if key not in ("model", "command")]
    lines += ["", sts_table(result), ""]
    return "\n".join(lines)


def write_sts_report(result: StsResult, out: str | os.PathLike) -> tuple[Path, Path]:
    """results/NAME -> results/NAME.json and results/NAME.md."""
    out = Path(out)
    json_path, md_path = out.with_name(out.name + ".json"), out.with_name(out.name + ".md")
    write_atomic(json_path, json.dumps(result.to_dict(), indent=2) + "\n")
    write_atomic(md_path, sts_markdown(result))
    return json_path, md_path

"""The command line answers --help and argument errors without importing torch; `cftune doctor`."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import time

import pytest

from cftune.cli import build_parser, main

HEAVY = ("torch", "transformers", "sentence_transformers")

# Parses argv in a fresh interpreter, then prints the exit code and which heavy packages were imported.
PROBE = """
import sys
import time
from cftune.cli import main
try:
    code = main(sys.argv[1:])
except SystemExit as exit:
    code = exit.code
print("EXIT", code)
print("HEAVY", ",".join(m for m in {heavy!r} if m in sys.modules))
"""


def probe(*argv: str) -> tuple[int, list[str], str]:
    """(exit code, heavy modules imported, stderr) of `cftune ARGV` run in a fresh process."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-c", PROBE.format(heavy=HEAVY), *argv], capture_output=True,
                          text=True, timeout=60, env=env)
    lines = dict(line.split(" ", 1) if " " in line else (line, "") for line in done.stdout.splitlines()
                 if line.startswith(("EXIT", "HEAVY")))
    assert "EXIT" in lines, done.stderr
    return int(lines["EXIT"]), [m for m in lines["HEAVY"].split(",") if m], done.stderr


COMMANDS = sorted(build_parser()._subparsers._group_actions[0].choices)


@pytest.mark.parametrize("argv", [["--help"]] + [[command, "--help"] for command in COMMANDS],
                         ids=lambda argv: " ".join(argv))
def test_help_imports_no_heavy_package(argv):
    code, heavy, _ = probe(*argv)
    assert code == 0
    assert heavy == [], f"cftune {' '.join(argv)} imported {heavy}"


@pytest.mark.parametrize("argv", [["eval", "--no-such-flag"], ["train"], ["serve", "--port", "99999"],
                                  ["no-such-command"]], ids=lambda argv: " ".join(argv))
def test_argument_error_exits_2_without_heavy_imports(argv):
    code, heavy, stderr = probe(*argv)
    assert code == 2
    assert "error:" in stderr
    assert heavy == [], f"cftune {' '.join(argv)} imported {heavy}"


def test_train_help_lists_the_shipped_recipes(capsys, monkeypatch):
    from cftune.config import recipe_names

    monkeypatch.setenv("COLUMNS", "1000")  # argparse wraps long help lines at hyphens
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert recipe_names() and all(name in text for name in recipe_names())


def test_public_names_are_importable_lazily():
    import cftune
    from cftune import DataFormatError, encode, evaluate_sts, load_embedder, train  # noqa: F401

    assert {"load_embedder", "encode", "train", "evaluate_sts"} <= set(dir(cftune))
    with pytest.raises(AttributeError):
        cftune.no_such_name  # noqa: B018


def test_doctor_prints_versions_and_precision(capsys, tmp_path):
    (tmp_path / "sts").mkdir()
    (tmp_path / "sts" / "STS12.jsonl").write_text("")
    assert main(["doctor", "--data-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    import torch
    import transformers

    for name, version in [("torch", torch.__version__), ("transformers", transformers.__version__),
                          ("python", ""), ("sentence-transformers", ""), ("peft", ""), ("cftune", "")]:
        assert any(line.startswith(name + " ") and version in line for line in out.splitlines()), name
    assert "precision auto" in out and ("float32" in out or "bfloat16" in out)
    from cftune.int8 import fused_steps

    fused = "fused with torch.compile" if fused_steps() is not None else "eager only"  # fused: a C++ compiler
    assert f"--quantize int8        available, {fused}" in out
    assert "1/10 tasks" in out and "missing: STS13" in out
    assert "gemma3-270m" in out


def test_doctor_benchmark_estimates_are_positive_and_finite():
    from cftune.doctor import benchmark

    estimate = benchmark(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                         num_key_value_heads=1, head_dim=16, vocab_size=64, batch_size=4, tokens=8, device="cpu")
    for value in (estimate.forward_s, estimate.train_pass_s, estimate.sts_pass_s, estimate.sts_pass_none_s,
                  estimate.train_step_s):
        assert value > 0 and math.isfinite(value)
    assert estimate.sts_pass_none_s < estimate.sts_pass_s
    assert estimate.precision in ("float32", "bfloat16") and len(estimate.assumptions()) == 3


@pytest.mark.skipif(not os.path.exists("/proc/stat"), reason="reads /proc/stat")
def test_doctor_sees_a_process_that_keeps_a_core_busy():
    from cftune.doctor import busy_cores

    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.3)  # started and spinning
        busy = busy_cores(seconds=1.0)
    finally:
        spinner.kill()
        spinner.wait()
    assert 0.7 <= busy <= os.cpu_count() + 1e-6


@pytest.mark.parametrize("module", ["cftune.reports", "cftune.config", "cftune.io", "cftune.hub", "cftune.data",
                                    "cftune.sources", "cftune.runs", "cftune.embedding", "cftune.mining"])
def test_light_modules_import_no_heavy_package(module):
    """Reports only read results; the others are what the command line checks its arguments with, before any
    model loads (sources, runs, data, and the output checks of embedding and mining)."""
    code = f"import sys, {module}; print(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout.strip() == "", f"import {module} pulled in {done.stdout.strip()}"


def test_the_cli_reference_is_the_parser_s_own_help():
    """docs/cli.md is generated from the parser; a flag added or changed without regenerating it fails here."""
    import re
    import sys
    from pathlib import Path

    from cftune.cli import reference_markdown

    committed = (Path(__file__).parent.parent / "docs" / "cli.md").read_text(encoding="utf-8")
    made_with = re.search(r"with Python (\d+\.\d+)", committed)[1]
    if made_with != f"{sys.version_info[0]}.{sys.version_info[1]}":
        pytest.skip(f"docs/cli.md was made with Python {made_with}, whose argparse lays help out its own way")
    assert committed == reference_markdown(), "regenerate it: python -m cftune.cli reference > docs/cli.md"
    assert "## cftune split-queries" in committed and "--max-client-batch-size" in committed


def test_the_command_line_names_the_flags_where_the_library_names_settings(tiny_models, nli_dir, tmp_path, capsys):
    from cftune.cli import in_flags
    from cftune.errors import ConfigError

    parser = build_parser()
    said = ConfigError("runs/x holds checkpoints; add `resume` to continue, or choose another `out`")
    assert in_flags(said, parser, "train") == "runs/x holds checkpoints; add --resume to continue, or choose " \
                                              "another --out"
    assert in_flags(ConfigError("must be >= 1, got 0", "batch_size"), parser, "train") == \
        "--batch-size: must be >= 1, got 0"
    assert in_flags(ConfigError("try `max_steps=5` or `lora_r`"), parser, "train") == "try --max-steps 5 or `lora_r`"
    # a real refusal, through the real command line: a folder of someone else's files is not an output
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    assert main(["train", "--model", str(tiny_models["llama"]), "--data-dir", str(nli_dir),
                 "--out", str(tmp_path / "mine")]) == 2
    assert f"--out {tmp_path / 'mine'}: holds files cftune did not write (notes.txt)" in capsys.readouterr().err

"""A training run's folder: who may write it, and which of its checkpoints a resume can use.

No torch here: `cftune train` checks its folder with these functions before it imports anything heavy.

    runs/NAME/cftune_run.json    the mark: cftune train made this folder, so a later train or --resume may use it
    runs/NAME/.cftune.lock       locked by the live process that trains into it (`cftune.io.FolderLock`)
    runs/NAME/config.yaml        the resolved recipe
    runs/NAME/checkpoints/       trainer checkpoints, each with cftune_files.json: the size and sha256 of every
                                 file in it, written once the trainer has finished writing them
    runs/NAME/train_log.jsonl    one JSON object per logged step (loss, lr, dev Spearman)
    runs/NAME/                   the trained model (a sentence-transformers folder), train_summary.json
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import zipfile
from dataclasses import dataclass
from pathlib import Path

import yaml

from cftune.config import BOOKKEEPING, ConfigError, TrainConfig, config_to_dict, flat_settings
from cftune.errors import ModelSourceError
from cftune.io import FolderLock, check_output_folder, file_sha256, write_atomic, write_marker

log = logging.getLogger(__name__)
RUN_MARK = "cftune_run.json"
MANIFEST = "cftune_files.json"  # in each checkpoint: {"files": {relative path: [size, sha256]}}
CHECKPOINT = re.compile(r"checkpoint-(\d+)")  # the trainer's folder names under OUT/checkpoints


@dataclass(frozen=True)
class RunFolder:
    """A training run's folder and its files by name (the layout above): the one place that spells them."""

    path: Path

    @property
    def mark(self) -> Path:
        return self.path / RUN_MARK

    @property
    def config(self) -> Path:
        return self.path / "config.yaml"

    @property
    def summary(self) -> Path:
        return self.path / "train_summary.json"

    @property
    def log(self) -> Path:
        return self.path / "train_log.jsonl"

    @property
    def curve(self) -> Path:
        return self.path / "training_curve.png"

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    def finished(self) -> bool:
        return self.summary.is_file()

    def read_config(self) -> dict:
        return yaml.safe_load(self.config.read_text(encoding="utf-8")) or {}

    def read_summary(self) -> dict:
        return json.loads(self.summary.read_text(encoding="utf-8"))


def is_run_folder(folder: Path) -> bool:
    """A folder cftune train wrote: its mark, or (a run of a cftune before the mark) a recipe beside
    checkpoints or a finished summary."""
    run = RunFolder(folder)
    return run.mark.is_file() or (run.config.is_file() and (run.finished() or run.checkpoints.is_dir()))


def check_same_config(run: Path, config: TrainConfig) -> None:
    """A run folder holding a config.yaml is only reused (resumed, or its result kept) with the same settings.

    The one comparison behind `train --resume` and the stages of `reproduce` / `ablate`.
    """
    saved_path = RunFolder(run).config
    if not saved_path.exists():
        return
    try:
        saved = flat_settings(yaml.safe_load(saved_path.read_text(encoding="utf-8")) or {})
    except (yaml.YAMLError, AttributeError):  # AttributeError: not a mapping
        saved = {}
    asked = flat_settings(config_to_dict(config))
    # A setting added after that run was made had its default then (every new setting defaults to the old
    # behaviour); a setting only the saved file knows (another cftune version) counts as different.
    defaults = flat_settings(config_to_dict(TrainConfig()))
    saved |= {key: defaults[key] for key in asked.keys() - saved.keys() if key in defaults}
    missing = "(not set)"
    differ = [f"{key}: {asked.get(key, missing)!r} asked, {saved.get(key, missing)!r} there"
              for key in sorted((saved.keys() | asked.keys()) - BOOKKEEPING,
                                key=lambda k: (k not in saved or k not in asked, k))  # real changes first
              if key not in saved or key not in asked or saved[key] != asked[key]]
    if differ:
        raise ConfigError(f"{run} holds a run with other settings than this command asks for "
                          f"({'; '.join(differ[:3])}{'; ...' if len(differ) > 3 else ''}; see {saved_path}); "
                          "choose another `out`, or delete that folder")


def mark_run_folder(out: Path) -> None:
    write_marker(out, RUN_MARK, {"written_by": "cftune train"})


def checkpoints(out: Path) -> list[tuple[int, Path]]:
    """The trainer's checkpoint-N folders of a run as (N, folder), oldest first."""
    return sorted((int(m[1]), p) for p in RunFolder(out).checkpoints.glob("checkpoint-*")
                  if p.is_dir() and (m := CHECKPOINT.fullmatch(p.name)))


def check_run_target(out: Path, config: TrainConfig, resume: bool) -> None:
    """Whether ``cftune train`` may write ``out``, decided before any work and without deleting anything.

    The folder is new, empty or a cftune run (anything else holds someone's files). A run's work, its
    checkpoints and its trained model, belongs to one configuration, and its checkpoints are continued only
    with --resume; a run without either (a start that failed before training) may start over with other
    settings. Starting over from checkpoints is the user's ``rm -r OUT/checkpoints``.
    """
    check_output_folder(out, ours=is_run_folder)
    FolderLock(out).check_free()  # in use: say so first, whatever else is true of the folder
    has_checkpoints, finished = bool(checkpoints(out)), RunFolder(out).finished()
    if not (has_checkpoints or finished):
        return
    if not RunFolder(out).config.exists():
        raise ConfigError(f"{out} holds checkpoints or a model of an unknown run (no config.yaml); "
                          "choose another `out`")
    check_same_config(out, config)
    if has_checkpoints and not resume:
        raise ConfigError(f"{out} holds checkpoints of an earlier run with these settings; add `resume` to "
                          f"continue it, or delete {out / 'checkpoints'} to start over")


EXPORT_MARK = "cftune_export.json"  # written into every export: what lets a later export replace it


def check_export_target(run: Path, out: Path, overwrite: bool) -> None:
    """Export never deletes what it did not write: --out is new, empty, or an earlier export (--overwrite
    for anything else), and never the folder we work in, the run, or a folder holding either."""
    if not (run / "modules.json").is_file():
        raise ModelSourceError(f"{run}: not a cftune train run or saved model (no modules.json)")
    target = out.resolve()
    for what, inside in (("the current folder", Path.cwd().resolve()), (f"the run {run}", run.resolve())):
        if inside == target or target in inside.parents:
            raise ConfigError(f"`out` {out} would replace {what}; choose another `out`")
    check_output_folder(out, ours=lambda folder: overwrite or (folder / EXPORT_MARK).is_file(),
                        advice=f"it is not a cftune export (no {EXPORT_MARK}): choose another `out`, or add "
                               "`overwrite` to replace it")


REPORT_MARK = "cftune_report.json"  # in a reproduce or ablate folder: a re-run continues it


def is_report_folder(folder: Path) -> bool:
    """A folder cftune reproduce or ablate wrote: its mark, or (before the mark) its runs/ folder."""
    return (folder / REPORT_MARK).is_file() or (folder / "runs" / ".gitignore").is_file()


def check_report_target(out: Path) -> None:
    """reproduce and ablate fill a new or empty folder, or continue one they wrote."""
    check_output_folder(out, ours=is_report_folder)
    FolderLock(out, "report folder").check_free()


def mark_report_folder(out: Path, command: str) -> None:
    write_marker(out, REPORT_MARK, {"written_by": command or "cftune"})


# --------------------------------------------------------------------------------------------- checkpoints


def write_manifest(folder: Path) -> None:
    """Record every file of a checkpoint the trainer has just finished, so a resume can tell a complete one."""
    files = {str(p.relative_to(folder)): [p.stat().st_size, file_sha256(p)]
             for p in sorted(folder.rglob("*")) if p.is_file() and p.name != MANIFEST}
    write_atomic(folder / MANIFEST, json.dumps({"files": files}, indent=1) + "\n")


def _manifest_problem(folder: Path) -> str | None:
    try:
        files = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))["files"]
        expected = {name: (int(size), str(digest)) for name, (size, digest) in files.items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return f"{MANIFEST} is unreadable"
    for name, (size, digest) in expected.items():
        path = folder / name
        if not path.is_file():
            return f"no {name}"
        if path.stat().st_size != size:
            return f"{name} has {path.stat().st_size} bytes, {size} were written"
        if file_sha256(path) != digest:
            return f"{name} differs from what was written"
    return None


def _structure_problem(folder: Path) -> str | None:
    """What the trainer needs to resume, checked by format: for checkpoints written before manifests, and
    for one killed after the trainer wrote it but before its manifest."""
    try:
        state = json.loads((folder / "trainer_state.json").read_text(encoding="utf-8"))
        state["log_history"], int(state["global_step"])
    except (OSError, ValueError, KeyError, TypeError):
        return "no readable trainer_state.json"
    for path in sorted(folder.glob("*.json")):
        try:
            json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return f"{path.name} is not readable JSON"
    from safetensors import SafetensorError, safe_open

    weights = sorted(folder.glob("*.safetensors"))
    for path in weights:
        try:
            with safe_open(str(path), "pt"):  # checks that the data covers what the header promises
                pass
        except (OSError, SafetensorError):
            return f"{path.name} is cut short"
    if not weights:
        return "no model weights"
    if (folder / "adapter_model.safetensors").exists() and not (folder / "adapter_config.json").is_file():
        return "no adapter_config.json"
    if not (folder / "tokenizer_config.json").is_file():
        return "no tokenizer_config.json"
    if not any((folder / name).is_file() for name in ("tokenizer.json", "tokenizer.model", "vocab.json", "vocab.txt")):
        return "no tokenizer vocabulary (tokenizer.json, tokenizer.model, vocab.json or vocab.txt)"
    for name in ("optimizer.pt", "scheduler.pt"):
        if not (folder / name).is_file():
            return f"no {name}"
    for path in [*folder.glob("*.pt"), *folder.glob("*.pth"), *folder.glob("*.bin")]:
        if not zipfile.is_zipfile(path):  # torch.save writes a zip; a cut or zeroed one has no central directory
            return f"{path.name} is cut short"
    return None


def checkpoint_problem(folder: Path) -> str | None:
    """Why a trainer checkpoint cannot be resumed from, or None when it is complete.

    The trainer writes straight into checkpoint-N: weights, optimizer, scheduler, RNG state, and
    trainer_state.json last; a kill in between, a full disk or a damaged file leaves a folder that would make
    every later resume fail. Complete means: every file of its manifest, with the size and sha256 it had
    when written; without a manifest, every file the resume loads present and well-formed.
    """
    if (folder / MANIFEST).exists():
        return _manifest_problem(folder) or _structure_problem(folder)
    return _structure_problem(folder)


def last_complete_checkpoint(out: Path, max_steps: int) -> Path | None:
    """The newest checkpoint a resume can use; incomplete ones are deleted with a warning.

    Only checkpoint-N folders under OUT/checkpoints are touched: the trainer of this run wrote them (the
    caller holds the run's lock and has checked that its config.yaml is this run's). The checkpoint of the
    last step is not used: resumed there, transformers trains one step too many unless that step ends an
    epoch (it looks for the end only after a step), so a run killed during its final save redoes its last
    few steps instead.
    """
    usable = []
    for step, folder in checkpoints(out):
        problem = checkpoint_problem(folder)
        if problem is None:
            usable += [folder] if step < max_steps else []
            continue
        log.warning("skipping checkpoint %s: %s; deleting it", folder, problem)
        if int(os.environ.get("RANK", "0")) == 0:  # with torchrun, one process deletes
            shutil.rmtree(folder, ignore_errors=True)
    return usable[-1] if usable else None


def cut_log(log_path: Path, checkpoint: Path) -> None:
    """Rewrite train_log.jsonl as it was when ``checkpoint`` was saved, so resumed steps are logged once.

    The checkpoint's trainer state holds every log entry up to it (the same dicts the JSON log callback wrote).
    """
    history = json.loads((checkpoint / "trainer_state.json").read_text(encoding="utf-8"))["log_history"]
    # "step" first, as the callback writes it (the merge keeps the first key's place)
    write_atomic(log_path, "".join(json.dumps({"step": entry["step"], **entry}) + "\n" for entry in history))

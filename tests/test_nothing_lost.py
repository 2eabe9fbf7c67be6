"""Nothing lost, nothing stuck: export, checkpoints, resume, settings and the CLI's error boundary."""

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from cftune import cli, load_embedder, training
from cftune.cli import main
from cftune.config import ConfigError, config_to_dict, load_config
from cftune.encoding import resolve_precision
from cftune.errors import ModelSourceError, OutputPathError
from cftune.export import export
from cftune.io import TEMP_MARK, replace_folder_atomically, write_atomic
from cftune.runs import EXPORT_MARK, MANIFEST, check_same_config, checkpoint_problem
from cftune.sources import resolve_source
from cftune.training import train

QUICK = {"batch_size": 8, "max_steps": 12, "warmup_steps": 2, "learning_rate": 1e-3, "eval_steps": 0,
         "save_steps": 4, "logging_steps": 1, "precision": "float32", "lora.dropout": 0.0}


def tiny_config(tiny_models, nli_dir, **settings):
    return load_config(overrides={"model": str(tiny_models["llama"]), "data_dir": str(nli_dir), **QUICK,
                                  **settings})


def log_rows(run):
    return [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()]


# --------------------------------------------------------------------------------------------- export


@pytest.fixture
def saved_model(tiny_models, tmp_path):
    run = tmp_path / "run"
    load_embedder(str(tiny_models["llama"])).save(str(run))
    return run


def test_export_never_deletes_what_it_did_not_write(saved_model, tmp_path, monkeypatch, capsys):
    out = tmp_path / "models" / "mine"
    out.mkdir(parents=True)
    (out / "thesis.tex").write_text("years of work")
    assert main(["export", str(saved_model), "--out", str(out)]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "is not a cftune export" in error and "--overwrite" in error
    assert (out / "thesis.tex").read_text() == "years of work"

    for target in (tmp_path, saved_model):  # a parent of the run, the run itself: refused even with --overwrite
        with pytest.raises(ConfigError, match="would replace the run"):
            export(saved_model, target, overwrite=True)
    monkeypatch.chdir(out)
    with pytest.raises(ConfigError, match="would replace the current folder"):
        export(saved_model, tmp_path / "models", overwrite=True)
    monkeypatch.chdir(tmp_path)
    assert (out / "thesis.tex").exists()

    empty = tmp_path / "models" / "empty"
    empty.mkdir()
    assert (export(saved_model, empty) / EXPORT_MARK).is_file()  # an empty folder holds nothing to lose

    export(saved_model, out, overwrite=True)  # asked for: replaced
    assert not (out / "thesis.tex").exists() and (out / "modules.json").exists()
    first = (out / EXPORT_MARK).stat().st_ino

    def killed_while_saving(self, path, *args, **kwargs):
        (Path(path) / "half.bin").write_bytes(b"\0" * 10)
        raise KeyboardInterrupt

    monkeypatch.setattr("sentence_transformers.SentenceTransformer.save", killed_while_saving)
    with pytest.raises(KeyboardInterrupt):
        export(saved_model, out)
    assert (out / EXPORT_MARK).stat().st_ino == first and not (out / "half.bin").exists()  # old one intact
    monkeypatch.undo()
    monkeypatch.chdir(tmp_path)

    export(saved_model, out)  # an earlier export is replaced without --overwrite
    assert (out / EXPORT_MARK).stat().st_ino != first
    assert sorted(p.name for p in out.parent.iterdir()) == ["empty", "mine"]  # no temporary folder left


KILLED_WRITER = """
import sys, time
from pathlib import Path
from cftune.io import replace_folder_atomically

def write(folder):
    (folder / "weights.bin").write_text("half")
    print("writing", flush=True)
    time.sleep(60)

replace_folder_atomically(Path(sys.argv[1]), write)
"""


def test_a_killed_writer_loses_nothing_and_the_next_write_removes_its_leftovers(tmp_path):
    target = tmp_path / "model"
    replace_folder_atomically(target, lambda folder: (folder / "weights.bin").write_text("old"))
    writer = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, str(target)], stdout=subprocess.PIPE, text=True)
    assert writer.stdout.readline() == "writing\n"
    writer.kill()  # SIGKILL mid-write: no cleanup code runs
    writer.wait()
    assert (target / "weights.bin").read_text() == "old"
    leftover = tmp_path / f".model{TEMP_MARK}{writer.pid}"
    assert leftover.is_dir()

    live = tmp_path / f".model{TEMP_MARK}{os.getppid()}"  # a live process's (here pytest's parent's): kept
    live.mkdir()
    report = tmp_path / "report.md"
    dead_file = tmp_path / f".report.md{TEMP_MARK}{writer.pid}"
    dead_file.write_text("half a report")
    write_atomic(report, "done\n")
    replace_folder_atomically(target, lambda folder: (folder / "weights.bin").write_text("new"))
    assert (target / "weights.bin").read_text() == "new" and report.read_text() == "done\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["model", "report.md", live.name])


# --------------------------------------------------------------------------------------------- checkpoints


def damage(folder: Path, name: str, how: str) -> None:
    path = folder / name
    if how == "cut":  # a write stopped half-way
        with open(path, "r+b") as handle:
            handle.truncate(handle.seek(0, 2) // 2)
    elif how == "zeroed":  # the right size, nothing in it (a disk that lost the data)
        path.write_bytes(b"\0" * path.stat().st_size)
    elif how == "missing":
        path.unlink()
    elif how == "fieldless":
        path.write_text(json.dumps({"log_history": []}))


DAMAGES = [("trainer_state.json", "cut"), ("trainer_state.json", "fieldless"), ("adapter_model.safetensors", "cut"),
           ("optimizer.pt", "cut"), ("optimizer.pt", "zeroed"), ("scheduler.pt", "missing"), ("rng_state.pth", "cut"),
           ("adapter_config.json", "missing"), ("tokenizer.json", "missing"), ("tokenizer_config.json", "missing"),
           ("training_args.bin", "zeroed")]


def test_checkpoint_problem_finds_every_damage_with_and_without_its_manifest(tiny_models, nli_dir, tmp_path):
    run = train(tiny_config(tiny_models, nli_dir, max_steps=4), tmp_path / "run")
    good = run / "checkpoints" / "checkpoint-4"
    assert checkpoint_problem(good) is None and (good / MANIFEST).is_file()
    for name, how in DAMAGES:
        broken = tmp_path / f"broken-{how}-{name}"
        shutil.copytree(good, broken)
        damage(broken, name, how)
        assert checkpoint_problem(broken), (name, how)  # the manifest's sizes and hashes
        (broken / MANIFEST).unlink()  # a checkpoint of an older cftune, or one killed before its manifest
        problem = checkpoint_problem(broken)
        assert problem and (name in problem or "tokenizer" in problem), (name, how, problem)
    shutil.copytree(good, tmp_path / "legacy")
    (tmp_path / "legacy" / MANIFEST).unlink()
    assert checkpoint_problem(tmp_path / "legacy") is None


def test_resume_skips_an_incomplete_checkpoint_and_logs_each_step_once(tiny_models, nli_dir, tmp_path,
                                                                        monkeypatch):
    config = tiny_config(tiny_models, nli_dir)
    straight = train(config, tmp_path / "straight")

    class Killed(Exception):
        pass

    def die_after_step_10(self, args, state, control, **kwargs):
        if state.global_step == 10:  # checkpoint-8 is on disk, steps 9 and 10 are logged, then kill -9
            raise Killed

    monkeypatch.setattr(training.JsonLogCallback, "on_step_end", die_after_step_10, raising=False)
    run = tmp_path / "killed"
    with pytest.raises(Killed):
        train(config, run)
    monkeypatch.undo()
    # the kill came while checkpoint-8 was being written: its trainer state never made it to disk
    (run / "checkpoints" / "checkpoint-8" / "trainer_state.json").unlink()
    train(config, run, resume=True)

    assert json.loads((run / "train_summary.json").read_text())["resumed_from"].endswith("checkpoint-4")
    expected, resumed = load_file(straight / "adapter_model.safetensors"), load_file(run / "adapter_model.safetensors")
    for key in expected:
        torch.testing.assert_close(resumed[key], expected[key], atol=1e-6, rtol=0)
    # every logged step once, with the uninterrupted run's values; aside: times, and the trainer's closing
    # train_loss, an average over the steps of the last invocation only
    timeless = [{k: v for k, v in row.items() if "runtime" not in k and "per_second" not in k
                 and k != "train_loss"} for row in log_rows(run)]
    assert [row["step"] for row in timeless] == [row["step"] for row in log_rows(straight)]
    for got, want in zip(timeless, log_rows(straight), strict=True):
        assert got == pytest.approx({k: v for k, v in want.items() if k in got}) and got.keys() <= want.keys()


def test_train_refuses_to_mix_with_another_runs_checkpoints(tiny_models, nli_dir, tmp_path, monkeypatch):
    run = tmp_path / "run"
    (run / "checkpoints" / "checkpoint-4").mkdir(parents=True)
    (run / "config.yaml").write_text(yaml.safe_dump(config_to_dict(tiny_config(tiny_models, nli_dir))))
    monkeypatch.setattr(training, "load_embedder", lambda *a, **k: pytest.fail("refuse before loading"))

    with pytest.raises(ConfigError, match=r"other settings .*learning_rate: 0\.002 asked, 0\.001 there"):
        train(tiny_config(tiny_models, nli_dir, learning_rate=2e-3), run, resume=True)
    with pytest.raises(ConfigError, match="add `resume` to continue"):  # same settings: continue only when asked
        train(tiny_config(tiny_models, nli_dir), run)
    (run / "config.yaml").unlink()
    with pytest.raises(OutputPathError, match=r"holds files cftune did not write \(checkpoints\)"):
        train(tiny_config(tiny_models, nli_dir), run, resume=True)
    assert (run / "checkpoints" / "checkpoint-4").is_dir()  # and nothing was deleted

    # logging is bookkeeping: a run may be continued with another logging_steps, not with another seed
    (run / "config.yaml").write_text(yaml.safe_dump(config_to_dict(tiny_config(tiny_models, nli_dir))))
    check_same_config(run, tiny_config(tiny_models, nli_dir, logging_steps=5))
    with pytest.raises(ConfigError, match="seed"):
        check_same_config(run, tiny_config(tiny_models, nli_dir, seed=1))


# --------------------------------------------------------------------------------------------- settings


@pytest.mark.parametrize("setting", [
    "max_steps=-5", "max_steps=0", "batch_size=0", "learning_rate=0", "learning_rate=nan", "temperature=0",
    "lora.r=0", "lora.alpha=0", "lora.dropout=1", "lora.dropout=-0.1", "precision=fp16", "prompt=Query:",
    "prompt={text} and {text}", "max_rows=0", "warmup_steps=-1", "mini_batch_size=0", "eval_steps=-1",
    "save_steps=0", "logging_steps=0", "max_length=0", "weight_decay=-1", "hardness=-1", "temperature=inf",
])
def test_bad_settings_are_refused_when_loaded_naming_the_field(setting):
    name = setting.partition("=")[0]
    with pytest.raises(ConfigError, match=rf"^{name}: must be "):
        load_config(overrides=[setting])


def test_recipe_errors_name_the_file_and_the_field(tmp_path):
    recipe = tmp_path / "r.yaml"
    for text, message in [("lora: 5\n", "lora: expected a mapping"), ("temperature: 0\n", "temperature: must be > 0"),
                          ("max_steps: 2.5\n", "max_steps: expected int"), ("max_steps: true\n", "expected int"),
                          ("lora:\n  r: 0\n", "lora.r: must be >= 1"), ("lora:\n  rank: 4\n", "unknown setting"),
                          ("eval_steps: 3\nsave_steps: 4\n", "save_steps: must be a multiple of eval_steps")]:
        recipe.write_text(text)
        with pytest.raises(ConfigError, match=rf"^{recipe}: .*{message}"):
            load_config(recipe)
    recipe.write_text("temperature: 0\n")
    assert load_config(recipe, ["temperature=0.1"]).temperature == 0.1  # fixed by --set: not the file's fault
    with pytest.raises(ConfigError, match="^lora: expected a mapping"):
        load_config(overrides=["lora=5"])


def test_ablate_refuses_a_negative_budget_and_unknown_tasks_before_any_work(capsys):
    assert main(["ablate", "--grid", "lr=1e-4,1e-3", "--steps", "-2", "--out", "unused"]) == 2
    assert "cftune: error: --steps: must be >= 1, got -2" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="^steps: must be >= 1, got -2$"):  # a library caller: the argument
        __import__("cftune.experiments", fromlist=["ablate"]).ablate("unused", grid={"lr": ["1"]}, steps=-2)
    assert main(["ablate", "--grid", "lr=1e-4,1e-3", "--steps", "2", "--tasks", "STS99", "--out", "unused"]) == 2
    assert "--tasks: unknown STS task 'STS99'" in capsys.readouterr().err


def test_fewer_rows_than_a_batch_stop_before_the_model_loads(tiny_models, nli_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(training, "load_embedder", lambda *a, **k: pytest.fail("the model loaded first"))
    with pytest.raises(ConfigError, match=r"3 usable rows .* fewer than one batch: batch_size=8"):
        train(tiny_config(tiny_models, nli_dir, max_rows=3), tmp_path / "run")


# --------------------------------------------------------------------------------------------- CLI errors


def test_cli_prints_one_line_for_our_errors_and_lets_bugs_through(tiny_models, sts_dir, monkeypatch, capsys):
    assert main(["eval", "--model", "gemma3-27m"]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "unknown model 'gemma3-27m'" in error and "did you mean gemma3-270m" in error
    started = time.perf_counter()
    assert main(["eval", "--model", "some-org/some-model"]) == 2  # offline (the tests' HF_HUB_OFFLINE=1), not cached
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "'some-org/some-model' is not in the local Hugging Face cache" in error
    assert "HF_HUB_OFFLINE is set" in error and time.perf_counter() - started < 5

    argv = ["eval", "--model", str(tiny_models["llama"]), "--data-dir", str(sts_dir), "--precision", "float32"]
    with monkeypatch.context() as patch:
        patch.setattr(cli, "load_model", lambda args: pytest.fail("a task name is checked before the model loads"))
        assert main([*argv, "--tasks", "STS12,STS99"]) == 2
    known = ["STS12", "STS13", "STS14", "STS15", "STS16", "STS17", "STSBenchmark", "BIOSSES", "SICK-R",
             "STSBenchmark.dev"]
    assert capsys.readouterr().err.strip().endswith(f"--tasks: unknown STS task 'STS99'; known: {', '.join(known)}")
    with pytest.raises(ConfigError, match="precision must be"):
        resolve_precision("fp16", "cpu")

    def bug(args):
        raise ValueError("a bug, not a user's mistake")

    monkeypatch.setattr(cli, "_eval", bug)
    with pytest.raises(ValueError, match="a bug"):
        main(argv)


def test_an_unknown_alias_without_a_close_one_lists_the_aliases():
    with pytest.raises(ModelSourceError, match=r"^unknown model 'llama9': .*\(aliases: gemma3-270m, "):
        resolve_source("llama9")


# --------------------------------------------------------------------------------------------- one writer

SLOW_TRAINER = """
import sys, time
from transformers import TrainerCallback
from cftune.config import load_config
from cftune.training import train

class Slow(TrainerCallback):
    def on_step_end(self, args, state, control, **kwargs):
        print("step", state.global_step, flush=True)
        time.sleep(0.3)

config = load_config(overrides=[f"model={sys.argv[1]}", f"data_dir={sys.argv[2]}", *sys.argv[4:]])
train(config, sys.argv[3], callbacks=(Slow(),))
print("finished", flush=True)
"""


def quick_flags():
    return [f"{key}={value}" for key, value in QUICK.items()]


def test_two_trainers_on_one_folder_one_is_refused_and_a_resume_cannot_touch_a_live_run(tiny_models, nli_dir,
                                                                                       tmp_path):
    run = tmp_path / "run"
    first = subprocess.Popen([sys.executable, "-c", SLOW_TRAINER, str(tiny_models["llama"]), str(nli_dir), str(run),
                              *quick_flags()], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    while (line := first.stdout.readline()) != "step 5\n":  # checkpoint-4 is on disk, the run goes on
        assert line, "the first trainer ended early"
    argv = ["--model", str(tiny_models["llama"]), "--data-dir", str(nli_dir), "--out", str(run),
            *(arg for flag in quick_flags() for arg in ("--set", flag))]
    for extra in ([], ["--resume"]):  # a second start, and a resume that would clean up "incomplete" checkpoints
        second = subprocess.run([sys.executable, "-m", "cftune.cli", "train", *argv, *extra], capture_output=True,
                                text=True, timeout=120)
        assert second.returncode == 2, second.stderr
        assert f"cftune: error: {run}: this run folder is in use by process {first.pid}" in second.stderr
    rest = first.communicate(timeout=300)[0]
    assert first.returncode == 0 and rest.endswith("finished\n")
    steps = [row["step"] for row in log_rows(run) if "loss" in row]
    assert steps == list(range(1, 13))  # every step logged once, by the one writer
    assert (run / "checkpoints" / "checkpoint-12").is_dir() and (run / "train_summary.json").is_file()
    # the lock is released with its process, however it ends: a resume now starts (and finds the run finished)
    assert main(["train", *argv, "--resume"]) == 0


def test_train_never_writes_into_a_folder_it_did_not_make(tiny_models, nli_dir, tmp_path, capsys):
    mine = tmp_path / "mine"
    mine.mkdir()
    files = {"README.md": "my notes", "config.yaml": "mine: true\n", "train_log.jsonl": '{"mine": 1}\n'}
    for name, text in files.items():
        (mine / name).write_text(text)
    argv = ["--model", str(tiny_models["llama"]), "--data-dir", str(nli_dir),
            *(arg for flag in quick_flags() for arg in ("--set", flag))]
    assert main(["train", *argv, "--out", str(mine)]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "holds files cftune did not write (README.md, config.yaml" in error
    assert {p.name: p.read_text() for p in mine.iterdir()} == files  # untouched

    afile = tmp_path / "afile"
    afile.write_text("x")
    for command in (["train", *argv, "--out", str(afile / "run")], ["reproduce", "--out", str(afile / "r")],
                    ["export", str(mine), "--out", str(afile / "e")], ["reproduce", "--out", str(mine)],
                    ["eval", "--model", str(tiny_models["llama"]), "--out", str(afile / "r"), "--tasks", "STS12"],
                    ["mine", "--input", str(nli_dir / "nli" / "triplets.csv"), "--out", str(afile / "m.csv")]):
        started = time.perf_counter()
        assert main(command) == 2, command
        error = capsys.readouterr().err
        # in-process and before any model: well under a second idle; 10 s holds on a loaded machine too
        assert error.count("\n") == 1 and time.perf_counter() - started < 10, (command, error)
        assert "is a file, not a folder" in error or "did not write" in error or "no modules.json" in error, error

    run = tmp_path / "run"  # a run cftune made is its own: trained, then trained again with --resume
    run.mkdir()
    (run / ".cftune.lock").write_text("process 1\n")  # all a start killed before its first file leaves
    assert main(["train", *argv, "--out", str(run)]) == 0
    assert (run / "cftune_run.json").is_file()
    assert main(["train", *argv, "--out", str(run), "--resume"]) == 0


@pytest.mark.parametrize("argv, message", [
    (["embed", "--input", "nosuch.txt", "--out", "v.npy"], "nosuch.txt: file not found"),
    (["embed", "--input", "texts.doc", "--out", "v.npy"], "unknown input format"),
    (["embed", "--input", "texts.txt", "--out", "v.npy", "--dim", "0"], "--dim: 0 is out of range"),
    (["embed", "--input", "texts.txt", "--out", "v.npy", "--batch-size", "0"], "--batch-size: 0 is out of range"),
    (["eval", "--batch-size", "-1"], "--batch-size: -1 is out of range"),
    (["mine", "--input", "pairs.csv", "--out", "m.csv", "--batch-size", "0"], "--batch-size: 0 is out of range"),
    (["eval", "--data-dir", "no-such-dir"], "no-such-dir: data folder not found"),
    (["train", "--data-dir", "no-such-dir", "--out", "run"], "no-such-dir: data folder not found"),
    (["train", "--data-dir", "data", "--out", "run"], "STSBenchmark.dev.jsonl: file not found"),
    (["train", "--data", "nli", "--out", "run"], "not in the local Hugging Face cache and HF_HUB_OFFLINE is set"),
    (["train", "--set", "temperature=0", "--out", "run"], "temperature: must be > 0"),
    (["eval", "--model", "org/no-such-model"], "'org/no-such-model' is not in the local Hugging Face cache"),
])
def test_every_command_checks_its_inputs_before_any_heavy_import(argv, message, tmp_path, monkeypatch):
    """Run as a new process, as a user would: answered in one line, with torch never imported."""
    (tmp_path / "texts.txt").write_text("a text\n")
    (tmp_path / "texts.doc").write_text("a text\n")
    (tmp_path / "pairs.csv").write_text("anchor,positive\na,b\n")
    (tmp_path / "data" / "nli").mkdir(parents=True)
    (tmp_path / "data" / "nli" / "t.csv").write_text("sent0,sent1,hard_neg\na,b,c\n")
    code = ("import sys; from cftune.cli import main; code = main(sys.argv[1:]); "
            "assert 'torch' not in sys.modules, 'torch was imported'; sys.exit(code)")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    env.pop("CFTUNE_DATA_DIR", None)
    done = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, cwd=tmp_path, env=env,
                          timeout=60)
    assert done.returncode == 2 and message in done.stderr, done.stderr
    assert done.stderr.count("\n") == 1 or done.stderr.startswith("usage:"), done.stderr


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full, a device that is always full")
def test_a_full_disk_during_a_checkpoint_is_one_line_and_the_run_resumes(tiny_models, nli_dir, tmp_path):
    from transformers import TrainerCallback

    from cftune.errors import DiskFullError

    run = tmp_path / "run"

    class FullDiskAtTheNextSave(TrainerCallback):
        """Before checkpoint-8 is written, its optimizer file is made a link to /dev/full: the kernel answers
        that write as a full disk does (ENOSPC)."""

        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == 7:
                (run / "checkpoints" / "checkpoint-8").mkdir()
                (run / "checkpoints" / "checkpoint-8" / "optimizer.pt").symlink_to("/dev/full")

    with pytest.raises(DiskFullError, match=rf"^{run}: no space left on the disk while writing \(\d+ MiB free now\); "
                                            "free some space, then continue with `resume`"):
        train(tiny_config(tiny_models, nli_dir), run, callbacks=(FullDiskAtTheNextSave(),))
    assert checkpoint_problem(run / "checkpoints" / "checkpoint-4") is None  # what was complete is kept
    train(tiny_config(tiny_models, nli_dir), run, resume=True)  # the half-written checkpoint-8 is skipped
    summary = json.loads((run / "train_summary.json").read_text())
    assert summary["steps"] == 12 and summary["resumed_from"].endswith("checkpoint-4")
    # the speed is of this invocation's 8 steps (train_seconds is rounded to 0.1 s)
    batch = load_config(overrides=QUICK).batch_size
    assert summary["rows_per_second"] == pytest.approx(8 * batch / summary["train_seconds"], rel=0.1)


def test_text_settings_keep_their_spaces_from_set_yaml_and_flags(tmp_path, tiny_models, nli_dir, monkeypatch):
    """--set query_prompt="query: " must not become "query:" (the model would read "query:What ...")."""
    from cftune.cli import main

    asked = []  # what `cftune train` hands the trainer, from its flags and --set
    monkeypatch.setattr("cftune.training.train", lambda config, out, resume: asked.append(config) or Path(out))
    assert main(["train", "--model", str(tiny_models["llama"]), "--prompt", "  Query: {text} ", "--set",
                 "query_prompt=query: ", "--data-dir", str(nli_dir), "--out", str(tmp_path / "run")]) == 0
    assert (asked[0].prompt, asked[0].query_prompt) == ("  Query: {text} ", "query: ")
    assert load_config(overrides=["query_prompt=query: ", "document_prompt=passage: "]).query_prompt == "query: "
    recipe = tmp_path / "r.yaml"
    recipe.write_text('query_prompt: "query: "\nmax_steps: 5\n')
    config = load_config(recipe, [" max_steps = 7 ", "hard_negatives= false"])  # numbers and flags: spaces go
    assert (config.query_prompt, config.max_steps, config.hard_negatives) == ("query: ", 7, False)
    assert yaml.safe_load(yaml.safe_dump(config_to_dict(config)))["query_prompt"] == "query: "

"""kill -9 at random moments, `cftune train --resume` each time: the same model as one uninterrupted run."""

import json
import random
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file

from cftune.runs import checkpoint_problem

STEPS = 30  # 96 triplets in batches of 4: 24 steps an epoch, so resumes also cross an epoch boundary
TRAIN = ["--max-steps", str(STEPS), "--set", "batch_size=4", "--set", "save_steps=2", "--set", "eval_steps=0",
         "--set", "logging_steps=1", "--set", "warmup_steps=2", "--set", "learning_rate=1e-3",
         "--set", "precision=float32", "--set", "lora.dropout=0"]  # float32, no dropout: deterministic


def launch(model, data_dir, out, log_file, resume):
    command = [sys.executable, "-m", "cftune.cli", "train", "--model", str(model), "--data-dir", str(data_dir),
               *TRAIN, "--out", str(out), *(["--resume"] if resume else [])]
    return subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT)


def read(path):
    try:
        return path.read_text()
    except OSError:  # not written yet
        return ""


def logged_steps(run):
    steps = [0]
    for line in read(run / "train_log.jsonl").splitlines():
        try:
            steps.append(json.loads(line)["step"])
        except ValueError:  # a line being written
            pass
    return max(steps)


def checkpoint_steps(run):
    return {int(p.name.split("-")[1]) for p in (run / "checkpoints").glob("checkpoint-*")}


def kill_plan(rng):
    """20 moments in order of progress: while starting up (imports, model load, resume), during a training
    step, the instant a checkpoint folder appears (the trainer then writes into it), and during the final
    save. Each moment lies before the end of a run resumed from where the previous kill left it."""
    plan = [("step", s) for s in rng.sample(range(1, STEPS), 7)]
    plan += [("checkpoint", n) for n in rng.sample(range(2, STEPS + 1, 2), 8)]
    plan.sort(key=lambda kill: kill[1])
    for _ in range(4):
        plan.insert(rng.randrange(len(plan) + 1), ("startup", rng.random()))
    return [*plan, ("final save", None)]


@pytest.mark.slow
def test_kill_9_at_20_moments_then_resume_gives_the_uninterrupted_model(tiny_models, nli_dir, tmp_path):
    model, straight, run = tiny_models["llama"], tmp_path / "straight", tmp_path / "killed"
    started = time.monotonic()
    with open(tmp_path / "straight.log", "w") as log_file:
        process = launch(model, nli_dir, straight, log_file, resume=False)
        while logged_steps(straight) == 0 and process.poll() is None:
            time.sleep(0.01)
        startup = time.monotonic() - started  # imports and model load: most of a process's life here
        assert process.wait() == 0, (tmp_path / "straight.log").read_text()[-3000:]

    rng = random.Random(1234)
    kills, cut_checkpoints = [], 0
    for attempt, (kind, target) in enumerate(kill_plan(rng)):
        before = checkpoint_steps(run) if run.exists() else set()
        with open(tmp_path / f"attempt-{attempt}.log", "w") as log_file:
            process = launch(model, nli_dir, run, log_file, resume=attempt > 0)
            begun = time.monotonic()
            while process.poll() is None:
                if kind == "startup" and time.monotonic() - begun > target * startup:
                    break
                if kind == "step" and logged_steps(run) >= target:
                    time.sleep(rng.uniform(0, 0.05))  # somewhere in the next step
                    break
                new = {n for n in checkpoint_steps(run) - before if n >= target} if kind == "checkpoint" else ()
                if new:
                    break
                if kind == "final save" and "train_runtime" in read(run / "train_log.jsonl"):
                    break
                time.sleep(0.002)
            process.send_signal(signal.SIGKILL)
            returncode = process.wait()
        if returncode == 0:  # it finished before the kill came
            break
        assert returncode == -signal.SIGKILL, (tmp_path / f"attempt-{attempt}.log").read_text()[-3000:]
        kills.append(kind)
        if kind == "checkpoint":
            cut_checkpoints += any(checkpoint_problem(run / "checkpoints" / f"checkpoint-{n}") for n in new)

    if not (run / "train_summary.json").exists():
        with open(tmp_path / "last.log", "w") as log_file:
            assert launch(model, nli_dir, run, log_file, resume=True).wait() == 0, \
                (tmp_path / "last.log").read_text()[-3000:]
    assert len(kills) >= 19, kills  # the final save may be over before the kill lands
    assert cut_checkpoints >= 1  # at least one kill left a half-written checkpoint behind for a resume to skip

    expected = load_file(straight / "adapter_model.safetensors")
    resumed = load_file(run / "adapter_model.safetensors")
    assert expected.keys() == resumed.keys()
    for key in expected:
        assert torch.allclose(resumed[key], expected[key], atol=1e-6, rtol=0), key
    steps = [json.loads(line)["step"] for line in (run / "train_log.jsonl").read_text().splitlines()]
    assert steps == [json.loads(line)["step"] for line in (straight / "train_log.jsonl").read_text().splitlines()]
    assert steps[:STEPS] == list(range(1, STEPS + 1))  # each step once (then the trainer's closing summary)

"""The paper's experiment (`reproduce`) and its ablations (`ablate`), as stages that survive a kill.

Every stage writes its result before the next one starts, and a stage whose result is on disk is skipped.
So re-running the same command after a crash (or after adding a model to ``--models``) does only what is
missing. Layout of an output folder:

    OUT/<model>/base.json, base.md       STS of the untrained model (with the recipe's prompt)
    OUT/<model>/tuned.json, tuned.md     STS of the fine-tuned model
    OUT/<model>/reference.json, .md      STS of the experiment's reference run (distill: without the teacher)
    OUT/teacher/<teacher>.json, .md      STS of the teacher, with its prompt (experiments with a teacher)
    OUT/runs/<model>/                    the training run (model, checkpoints, log); not for git
    OUT/runs/<model>-reference/          the reference run
    OUT/report.md, report.json, *.png    the report, rebuilt from the stage results on every run
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import json
import logging
import re
import time
import typing
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from cftune.config import (
    ConfigError,
    TrainConfig,
    config_to_dict,
    find_experiment,
    load_config,
    validate,
)
from cftune.data import load_retrieval_set, parse_tasks
from cftune.encoding import use_prompt_name
from cftune.evaluation import StsResult, evaluate_retrieval, evaluate_sts
from cftune.io import FolderLock, machine, write_atomic
from cftune.models import load_embedder, prepare_for_inference
from cftune.reports import (
    ablation_markdown,
    model_card_section,
    plot_ablation,
    plot_base_vs_tuned,
    plot_training_curve,
    report_file,
    reproduce_markdown,
    write_model_card_section,
    write_retrieval_report,
    write_sts_report,
)
from cftune.runs import RunFolder, check_report_target, check_same_config, mark_report_folder

log = logging.getLogger(__name__)

# Short names for the factors people ablate; any other TrainConfig setting works under its own name.
FACTOR_ALIASES = {"lr": "learning_rate", "hard_negative": "hard_negatives", "hn": "hard_negatives"}


@dataclass
class Stage:
    name: str
    done: Callable[[], bool]
    run: Callable[[], object]


def run_stages(stages: list[Stage]) -> None:
    """The one place that reports progress for a whole job: stage k of n, skipped when already done."""
    for k, stage in enumerate(stages, start=1):
        if stage.done():
            log.info("[stage %d/%d] %s: done before, skipped", k, len(stages), stage.name)
            continue
        log.info("[stage %d/%d] %s", k, len(stages), stage.name)
        started = time.perf_counter()
        stage.run()
        log.info("[stage %d/%d] %s: finished in %.0f s", k, len(stages), stage.name, time.perf_counter() - started)


def slug(text: str) -> str:
    """A folder name for a model (alias, hub id or path) or a configuration."""
    return re.sub(r"[^A-Za-z0-9._=-]+", "_", Path(text).name if "/" in text else text).strip("_") or "model"


def read_result(path: Path) -> StsResult:
    return StsResult.from_dict(json.loads(path.read_text(encoding="utf-8")))


@contextlib.contextmanager
def report_folder(out: Path, command: str) -> Iterator[None]:
    """The report folder, for this job alone while it runs (a second reproduce or ablate into it is refused),
    marked as cftune's; its runs/ (models and checkpoints) stays out of git, so it can be committed as it is."""
    with FolderLock(out, "report folder"):
        mark_report_folder(out, command)
        (out / "runs").mkdir(exist_ok=True)
        write_atomic(out / "runs" / ".gitignore", "*\n")
        yield


def base_embedder(config: TrainConfig, prompt: str | None = None):
    """The untrained model with the design the configuration trains (pooling, attention, layers)."""
    design = dataclasses.replace(config.design, prompt=prompt or config.prompt)
    return prepare_for_inference(load_embedder(config.model, design), precision="auto")


def trained_embedder(run: Path):
    """A run's model, loaded for evaluation: its LoRA merged in memory (faster), the folder unchanged;
    bf16 weights where the hardware has bf16 natively."""
    return prepare_for_inference(load_embedder(str(run)), precision="auto")


def teacher_embedder(config: TrainConfig):
    """A run's teacher as it embeds for the run: with its named prompt (``teacher_prompt``)."""
    model = prepare_for_inference(load_embedder(typing.cast(str, config.teacher)), precision="auto")
    use_prompt_name(model, config.teacher_prompt)
    return model


def train_stage(config: TrainConfig, run: Path, label: str = "") -> Stage:
    from cftune.training import train

    check_same_config(run, config)  # now, before any stage runs: a finished run is reused only if it matches

    def run_training():
        train(config, run, resume=RunFolder(run).checkpoints.is_dir())  # continue a killed run

    length = f"{config.max_steps} steps" if config.max_steps else f"{config.epochs:g} epochs"
    return Stage(f"fine-tune {label or config.model} ({length})", RunFolder(run).finished, run_training)


def eval_stage(name: str, load: Callable, out: Path, *, tasks, data_dir, meta: dict,
               card_of: Path | None = None) -> Stage:
    """STS of the model ``load`` gives, written to ``out``; with ``card_of``, also into that trained run's
    model card."""
    def run_eval():
        started = time.perf_counter()
        result = evaluate_sts(load(), tasks, data_dir=data_dir)
        result.meta = {**meta, "machine": machine(), "eval_seconds": round(time.perf_counter() - started, 1)}
        write_sts_report(result, out)
        if card_of is not None:
            trained = RunFolder(card_of)
            write_model_card_section(card_of, model_card_section(trained.read_config(), trained.read_summary(),
                                                                 result))

    return Stage(name, report_file(out, ".json").exists, run_eval)


# --------------------------------------------------------------------------------------------- reproduce


def reproduce_configs(experiment: str, models: list[str] | None, data_dir: str | None,
                      settings: list[str] | None = None) -> dict[str, TrainConfig]:
    recipes = find_experiment(experiment).recipes
    models = models or list(recipes)
    fallback = next(iter(recipes.values()))
    data = [f"data_dir={data_dir}"] if data_dir is not None else []
    # load_config checks each --set item; the model goes last, so it wins
    return {m: load_config(recipes.get(m, fallback), [*data, *(settings or []), f"model={m}"]) for m in models}


def reference_run(out: Path, model: str) -> Path:
    return out / "runs" / f"{slug(model)}-reference"


def teacher_result(out: Path, teacher: str) -> Path:
    return out / "teacher" / slug(teacher)


def reference_configs(experiment: str, configs: dict[str, TrainConfig]) -> dict[str, TrainConfig]:
    """Each model's reference run: its recipe with the experiment's ``reference`` settings (none: no reference)."""
    reference = find_experiment(experiment).reference
    return {model: validate(dataclasses.replace(config, **reference)) for model, config in configs.items()} \
        if reference else {}


def teacher_stages(configs: dict[str, TrainConfig], out: Path, tasks, command: str) -> list[Stage]:
    """STS of each teacher the runs learn from, with its prompt: the score every student is read against."""
    teachers = {config.teacher: config for config in configs.values() if config.teacher}
    return [eval_stage(f"STS of the teacher {name}", lambda c=config: teacher_embedder(c),
                       teacher_result(out, name), tasks=tasks, data_dir=config.data_dir,
                       meta={"model": f"{name} (teacher, prompt {config.teacher_prompt})", "command": command})
            for name, config in teachers.items()]


def reproduce(out: str | Path, *, experiment: str = "cpu-small", models: list[str] | None = None,
              data_dir: str | None = None, tasks: str | None = None, settings: list[str] | None = None,
              retrieval: str | None = None, command: str = "") -> Path:
    """For each model: STS of the base model, fine-tune it, STS of the result; then the report.

    ``tasks`` defaults to the experiment's own (all 9 except for the quick one). With ``retrieval`` (a folder
    in the BEIR layout), the base and the fine-tuned model are also scored on that search set."""
    tasks = tasks or find_experiment(experiment).tasks
    parse_tasks(tasks)  # a mistyped task fails now, not after hours of training
    if retrieval:
        load_retrieval_set(retrieval)  # so does a bad search set
    out = Path(out)
    check_report_target(out)  # before anything is read or written
    configs = reproduce_configs(experiment, models, data_dir, settings)
    references, label = reference_configs(experiment, configs), find_experiment(experiment).reference_label
    stages = teacher_stages(configs, out, tasks, command)
    for model, config in configs.items():
        folder, run = out / slug(model), out / "runs" / slug(model)
        stages.append(eval_stage(f"STS of base {model}", lambda c=config: base_embedder(c),
                                 folder / "base", tasks=tasks, data_dir=config.data_dir,
                                 meta={"model": f"{model} (base)", "command": command}))
        if model in references:
            reference = reference_run(out, model)
            stages += [train_stage(references[model], reference, f"{model}, {label}"),
                       eval_stage(f"STS of {model}, {label}", lambda r=reference: trained_embedder(r),
                                  folder / "reference", tasks=tasks, data_dir=config.data_dir,
                                  meta={"model": f"{model} ({label})", "command": command}, card_of=reference)]
        stages += [
            train_stage(config, run),
            eval_stage(f"STS of fine-tuned {model}", lambda r=run: trained_embedder(r), folder / "tuned",
                       tasks=tasks, data_dir=config.data_dir, meta={"model": f"{model} (fine-tuned)",
                                                                    "command": command}, card_of=run),
        ]
        if retrieval:
            stages += [retrieval_stage(f"search with base {model}", lambda c=config: base_embedder(c), retrieval,
                                       folder / "base"),
                       retrieval_stage(f"search with fine-tuned {model}", lambda r=run: trained_embedder(r),
                                       retrieval, folder / "tuned")]
    with report_folder(out, command):
        run_stages(stages)
        return write_reproduce_report(out, configs, experiment, command)


def retrieval_stage(name: str, load: Callable, data: str, out: Path) -> Stage:
    """Search scores of the model ``load`` gives, as OUT.retrieval.json and .md."""
    def run_retrieval():
        result = evaluate_retrieval(load(), data)
        result.meta = {"machine": machine()}
        write_retrieval_report(result, out)

    return Stage(name, report_file(out, ".retrieval.json").exists, run_retrieval)


def write_reproduce_report(out: Path, configs: dict[str, TrainConfig], experiment: str, command: str) -> Path:
    entries = {}
    for model, config in configs.items():
        folder, run = out / slug(model), out / "runs" / slug(model)
        base, tuned = read_result(folder / "base.json"), read_result(folder / "tuned.json")
        summary = RunFolder(run).read_summary()
        bars, curve = out / f"{slug(model)}-sts.png", out / f"{slug(model)}-training.png"
        plot_base_vs_tuned(base, tuned, model, bars)
        plot_training_curve(RunFolder(run).log, curve)
        entries[model] = {"config": config_to_dict(config), "train": summary, "base": base.to_dict(),
                          "tuned": tuned.to_dict(), "plots": [bars.name, curve.name]}
        if (folder / "reference.json").exists():  # the experiment's reference row (e.g. without the teacher)
            entries[model]["reference"] = {"label": find_experiment(experiment).reference_label,
                                           "train": RunFolder(reference_run(out, model)).read_summary(),
                                           "result": read_result(folder / "reference.json").to_dict()}
        if (folder / "tuned.retrieval.json").exists():  # scored on a search set too (--retrieval)
            entries[model]["retrieval"] = {
                stage: json.loads((folder / f"{stage}.retrieval.json").read_text(encoding="utf-8"))
                for stage in ("base", "tuned")}
    teachers = {config.teacher: read_result(report_file(teacher_result(out, config.teacher), ".json")).to_dict()
                for config in configs.values() if config.teacher}
    report = {"experiment": experiment, "title": find_experiment(experiment).title, "command": command,
              "machine": machine(), "teachers": teachers, "models": entries}
    write_atomic(out / "report.json", json.dumps(report, indent=2) + "\n")
    write_atomic(out / "report.md", reproduce_markdown(report))
    return out / "report.md"


# --------------------------------------------------------------------------------------------- ablate


def parse_grid(items: list[str]) -> dict[str, list[str]]:
    """["lr=1e-5,5e-5", "prompt=none,eol"] -> {"learning_rate": ["1e-5", "5e-5"], "prompt": ["none", "eol"]}."""
    grid = {}
    for item in items:
        key, sep, values = item.partition("=")
        levels = [v.strip() for v in values.split(",") if v.strip()]
        if not sep or not levels:
            raise ConfigError(f"expects factor=level,level,..., got {item!r}", "grid")
        grid[FACTOR_ALIASES.get(key.strip(), key.strip())] = levels
    if not grid:
        raise ConfigError("ablate needs at least one factor=level,level,...", "grid")
    return grid


def ablation_configs(base_recipe: str, overrides: list[str],
                     grid: dict[str, list[str]]) -> dict[str, tuple[dict, TrainConfig]]:
    """Every combination of the grid's levels -> (its levels, its full config), keyed by a folder name."""
    combos = {}
    for levels in itertools.product(*grid.values()):
        point = dict(zip(grid, levels, strict=True))
        # an unknown factor fails here, before any work; the grid point goes last, so it wins
        config = load_config(base_recipe, [*overrides, *(f"{k}={v}" for k, v in point.items())])
        combos[",".join(f"{k}={v}" for k, v in point.items())] = (point, config)
    return combos


def ablate(out: str | Path, *, grid: dict[str, list[str]], steps: int, model: str | None = None,
           recipe: str = "cpu-gemma3-270m", data_dir: str | None = None, tasks: str = "all",
           settings: list[str] | None = None, retrieval: str | None = None, command: str = "") -> Path:
    """Train and evaluate every grid point with a short budget (no dev set); one table, one plot per factor.
    With ``retrieval`` (a BEIR folder or judgements file), each point is also scored on that search set, so a
    setting is chosen on both."""
    if steps < 1:  # max_steps would catch it too, but under a name this command does not use
        raise ConfigError(f"must be >= 1, got {steps}", "steps")
    parse_tasks(tasks)  # a mistyped task fails now, not after hours of training
    if retrieval:
        load_retrieval_set(retrieval)  # so does a bad search set
    out = Path(out)
    check_report_target(out)  # before anything is read or written
    overrides: dict[str, object] = {"max_steps": steps, "warmup_steps": max(1, steps // 10), "eval_steps": 0,
                                    "save_steps": steps, "logging_steps": max(1, steps // 20)}
    overrides |= {"model": model} if model else {}
    overrides |= {"data_dir": data_dir} if data_dir is not None else {}
    fixed = [*(f"{k}={v}" for k, v in overrides.items()), *(settings or [])]
    combos = ablation_configs(recipe, fixed, grid)
    # the untrained model, once per prompt in the grid: the reference that shows what training bought. It has
    # the recipe's design (with the fixed settings), not a grid point's: the model every point starts from.
    start = load_config(recipe, fixed)
    base_points = {config.prompt: out / "points" / slug(f"untrained,prompt={config.prompt}")
                   for _, config in combos.values()}
    stages = [eval_stage(f"STS of untrained {start.model} (prompt {prompt})",
                         lambda p=prompt: base_embedder(start, p), path, tasks=tasks,
                         data_dir=start.data_dir, meta={"model": f"{start.model} (untrained)", "command": command})
              for prompt, path in base_points.items()]
    for name, (_, config) in combos.items():
        run = out / "runs" / slug(name)
        stages += [train_stage(config, run, name),
                   eval_stage(f"STS of {name}", lambda r=run: trained_embedder(r), out / "points" / slug(name),
                              tasks=tasks, data_dir=config.data_dir, meta={"model": name, "command": command})]
        if retrieval:
            stages.append(retrieval_stage(f"search with {name}", lambda r=run: trained_embedder(r), retrieval,
                                          out / "points" / slug(name)))
    with report_folder(out, command):
        run_stages(stages)
        return write_ablation_report(out, combos, base_points, grid, steps, tasks, command)


def write_ablation_report(out: Path, combos: dict, base_points: dict[str, Path], grid: dict[str, list[str]],
                          steps: int, tasks: str, command: str) -> Path:
    """The table, the plots and the JSON of an ablation, from its stages' results on disk."""
    first_config = next(iter(combos.values()))[1]
    rows = []
    for name, (point, _config) in combos.items():
        summary = RunFolder(out / "runs" / slug(name)).read_summary()
        result = read_result(report_file(out / "points" / slug(name), ".json"))
        rows.append({"point": point, "scores": result.scores, "average": result.average,
                     "train_seconds": summary["train_seconds"]})
        search = report_file(out / "points" / slug(name), ".retrieval.json")
        if search.exists():  # scored on a search set too (--retrieval)
            rows[-1]["retrieval"] = json.loads(search.read_text(encoding="utf-8"))["scores"]
    untrained = []
    for prompt, path in base_points.items():
        result = read_result(report_file(path, ".json"))
        untrained.append({"prompt": prompt, "scores": result.scores, "average": result.average})
    plots = [plot_ablation(rows, factor, out / f"ablation-{slug(factor)}.png", untrained) for factor in grid]
    report = {"command": command, "machine": machine(), "grid": grid, "steps": steps, "tasks": tasks,
              "model": first_config.model, "data": summary["data"], "rows_per_run": summary["rows"],
              "fixed_settings": {k: v for k, v in config_to_dict(first_config).items() if k not in grid},
              "results": rows, "untrained": untrained, "plots": [p.name for p in plots]}
    write_atomic(out / "ablation.json", json.dumps(report, indent=2) + "\n")
    write_atomic(out / "ablation.md", ablation_markdown(report))
    return out / "ablation.md"

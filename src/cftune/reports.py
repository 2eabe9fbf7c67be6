"""Results as files people read: JSON for programs, a Markdown table for humans; written atomically."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from cftune.data import STS_TASKS
from cftune.io import atomic_file, write_atomic

if TYPE_CHECKING:  # the results are only read here; evaluation (and torch) stay out of reports
    from cftune.evaluation import RetrievalResult, StsResult


def sts_table(result: StsResult) -> str:
    rows = ["| task | pairs | Spearman x100 |", "|---|---:|---:|"]
    rows += [f"| {task} | {result.pairs[task]} | {score:.2f} |" for task, score in result.scores.items()]
    rows.append(f"| **average** | | **{result.average:.2f}** |")
    return "\n".join(rows)


def _heading(kind: str, meta: dict) -> list[str]:
    """The top of a result's Markdown: what was scored, and the command that scored it."""
    lines = [f"# {kind}: {meta.get('model', 'model')}", ""]
    return lines + (["Command:", "", f"    {meta['command']}", ""] if meta.get("command") else [])


def sts_markdown(result: StsResult) -> str:
    meta = result.meta
    lines = _heading("STS", meta)
    lines += [
        f"- prompt: {json.dumps(result.prompt) if result.prompt is not None else 'n/a (encoder pooling)'}",
        f"- precision: {result.precision}",
        f"- {result.sentences_encoded} distinct sentences encoded in {result.encode_seconds:.1f} s",
    ]
    lines += [f"- {key}: {value}" for key, value in meta.items() if key not in ("model", "command")]
    lines += ["", sts_table(result), ""]
    return "\n".join(lines)


def report_file(out: str | os.PathLike, suffix: str) -> Path:
    """results/NAME and ".json" -> results/NAME.json: the one naming rule for result files. NAME may hold dots
    (an ablation point such as lr=0.5), so never ``with_suffix``, which would cut it."""
    out = Path(out)
    return out.with_name(out.name + suffix)


def write_sts_report(result: StsResult, out: str | os.PathLike) -> tuple[Path, Path]:
    """results/NAME -> results/NAME.json and results/NAME.md."""
    json_path, md_path = report_file(out, ".json"), report_file(out, ".md")
    write_atomic(json_path, json.dumps(result.to_dict(), indent=2) + "\n")
    write_atomic(md_path, sts_markdown(result))
    return json_path, md_path


def mteb_task_result(result: StsResult, task: str) -> dict:
    """One task's score in MTEB's result file format (``<TaskName>.json``, as ``mteb.load_results`` reads it).

    cftune scores Spearman of the cosine similarity only, so the scores are ``cosine_spearman`` and MTEB's
    aliases of it (``spearman``, ``main_score``), as fractions. ``dataset_revision`` is MTEB's pinned revision
    when the pairs came from the hub (cftune loads that revision), else ``local:`` and the file's sha256, so a
    reader sees the data was not MTEB's download. ``evaluation_time`` is the one encoding pass of all the tasks.
    """
    from cftune.io import file_sha256

    spec, source = STS_TASKS[task], result.sources[task]
    revision = spec.revision if source.startswith("hub:") else f"local:sha256:{file_sha256(Path(source))}"
    score = result.scores[task] / 100
    return {"dataset_revision": revision, "task_name": task, "mteb_version": None,
            "scores": {spec.split: [{"cosine_spearman": score, "spearman": score, "main_score": score,
                                     "hf_subset": spec.hub_subset or "default", "languages": ["eng-Latn"]}]},
            "evaluation_time": result.meta.get("eval_seconds"), "kg_co2_emissions": None}


def mteb_result_file(folder: str | os.PathLike, model: str, task: str) -> Path:
    """MTEB's results layout: ``folder/<model, / as __>/no_revision_available/<TaskName>.json``."""
    return Path(folder) / model.strip("/").replace("/", "__") / "no_revision_available" / f"{task}.json"


def write_mteb_results(result: StsResult, folder: str | os.PathLike, model: str) -> list[Path]:
    """A file per task in MTEB's layout (a folder of several models' results, as MTEB keeps them)."""
    written = []
    for task in result.scores:
        path = mteb_result_file(folder, model, task)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, json.dumps(mteb_task_result(result, task), indent=2) + "\n")
        written.append(path)
    return written


def dimensions_markdown(results: Sequence[StsResult]) -> str:
    """One model's STS scores with its vectors cut to several lengths: a row per length."""
    meta, tasks = results[0].meta, list(results[0].scores)
    lines = _heading("STS by vector length", meta)
    lines += [f"- precision: {results[0].precision}; one encoding pass of {results[0].sentences_encoded} distinct "
              f"sentences ({results[0].encode_seconds:.1f} s), each length scored from the leading numbers of "
              "the same vectors, renormalized", ""]
    lines += [f"- {key}: {value}" for key, value in meta.items() if key not in ("model", "command")]
    lines += ["", *_task_header(tasks, ["dimension"])]
    for result in results:
        lines.append(_row([str(result.dimension), *[f"{result.scores[t]:.2f}" for t in tasks],
                           f"**{result.average:.2f}**"]))
    return "\n".join(lines) + "\n"


def write_dimensions_report(results: Sequence[StsResult], out: str | os.PathLike) -> tuple[Path, Path, Path]:
    """results/NAME -> NAME.json (a result per length), NAME.md (the table) and NAME.png (average by length)."""
    json_path, md_path, png_path = (report_file(out, suffix) for suffix in (".json", ".md", ".png"))
    write_atomic(json_path, json.dumps({"dimensions": [r.to_dict() for r in results]}, indent=2) + "\n")
    write_atomic(md_path, dimensions_markdown(results))
    plot_dimensions({results[0].meta.get("model", "model"): results}, png_path)
    return json_path, md_path, png_path


def retrieval_table(result: RetrievalResult) -> str:
    rows = ["| metric | x100 |", "|---|---:|"]
    rows += [f"| {metric} | {score:.2f} |" for metric, score in result.scores.items()]
    return "\n".join(rows)


def write_retrieval_report(result: RetrievalResult, out: str | os.PathLike) -> tuple[Path, Path]:
    """results/NAME -> results/NAME.retrieval.json and results/NAME.retrieval.md."""
    json_path, md_path = report_file(out, ".retrieval.json"), report_file(out, ".retrieval.md")
    write_atomic(json_path, json.dumps(result.to_dict(), indent=2) + "\n")
    meta = result.meta
    lines = _heading("Retrieval", meta)
    lines += [f"- data: {result.source}: {result.queries} queries with judgements, {result.documents} documents"
              + (f", read up to {result.max_length} tokens" if result.max_length else ""),
              f"- cosine search by sentence-transformers' InformationRetrievalEvaluator, {result.precision}, "
              f"{result.seconds:.1f} s", f"- machine: {meta.get('machine', '?')}", "", retrieval_table(result), ""]
    write_atomic(md_path, "\n".join(lines))
    return json_path, md_path


# --------------------------------------------------------------------------------------------- figures

# Published figures shown beside measured ones, never mixed with them. Averages over the same 9 tasks.
PUBLISHED = [
    {"model": "MiniCPM-2B fine-tuned (paper)", "average": 83.84,
     "source": "Ukarapol, Lee, Xin 2024, 'Improving Text Embeddings for Smaller Language Models Using "
               "Contrastive Fine-tuning', table of STS results (base -> fine-tuned: +56.33% relative)"},
    {"model": "all-MiniLM-L6-v2", "average": 80.20,
     "source": "MTEB leaderboard scores of sentence-transformers/all-MiniLM-L6-v2 on these 9 tasks"},
]
SHORT_TASK = {"STSBenchmark": "STS-B"}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # no screen needed
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, png_path: Path) -> Path:
    plt = _pyplot()
    fig.tight_layout()
    with atomic_file(png_path) as tmp:
        fig.savefig(tmp, dpi=120, format="png")  # the temporary name does not end in .png
    plt.close(fig)
    return png_path


def plot_training_curve(log_path: Path, png_path: Path) -> Path:
    """Train loss and (when the run had a dev set) STS-B dev Spearman over steps, from train_log.jsonl."""
    rows = [json.loads(line) for line in log_path.read_text().splitlines() if line.strip()]
    loss = [(r["step"], r["loss"]) for r in rows if "loss" in r]
    dev = [(r["step"], v * 100) for r in rows for k, v in r.items() if k.endswith("_spearman_cosine")]
    fig, ax = _pyplot().subplots(figsize=(7, 4))
    if loss:
        ax.plot(*zip(*loss, strict=True), color="tab:blue", label="train loss")
    ax.set_xlabel("step")
    ax.set_ylabel("training loss", color="tab:blue")
    if dev:
        ax2 = ax.twinx()
        ax2.plot(*zip(*dev, strict=True), "o-", color="tab:orange", label="STS-B dev Spearman x100")
        ax2.set_ylabel("STS-B dev Spearman x100", color="tab:orange")
    ax.set_title("cftune training curve")
    return save_figure(fig, png_path)


def plot_base_vs_tuned(base: StsResult, tuned: StsResult, model: str, png_path: Path) -> Path:
    tasks = list(base.scores)
    x = range(len(tasks) + 1)
    fig, ax = _pyplot().subplots(figsize=(9, 4))
    width = 0.4
    for offset, result, label in [(-width / 2, base, "base"), (width / 2, tuned, "fine-tuned")]:
        values = [result.scores[t] for t in tasks] + [result.average]
        bars = ax.bar([i + offset for i in x], values, width, label=label)
        ax.bar_label(bars, fmt="%.0f", fontsize=7)
    ax.set_xticks(list(x), [SHORT_TASK.get(t, t) for t in tasks] + ["avg"], fontsize=8)
    ax.set_ylabel("Spearman x100")
    ax.set_title(f"{model}: STS before and after contrastive fine-tuning")
    ax.legend()
    return save_figure(fig, png_path)


def plot_dimensions(series: dict[str, Sequence[StsResult]], png_path: Path) -> Path:
    """Average STS against vector length (log scale), a line per model: how much a shorter vector costs."""
    fig, ax = _pyplot().subplots(figsize=(6, 4))
    for label, results in series.items():
        ax.plot([r.dimension for r in results], [r.average for r in results], "o-", label=label)
    ax.set_xscale("log", base=2)
    lengths = sorted({r.dimension for results in series.values() for r in results if r.dimension})
    ax.set_xticks(lengths, [str(d) for d in lengths])
    ax.set_xlabel("vector length (leading dimensions kept)")
    ax.set_ylabel("average Spearman x100")
    ax.set_title("STS by vector length")
    ax.legend(fontsize=7)
    return save_figure(fig, png_path)


def plot_ablation(rows: list[dict], factor: str, png_path: Path, untrained: Sequence[dict] = ()) -> Path:
    """Average STS against one factor's levels, one line per setting of the other factors.

    ``untrained``: the model before training (one entry per prompt), drawn as dashed reference lines.
    """
    levels = list(dict.fromkeys(str(r["point"][factor]) for r in rows))
    lines: dict[str, dict[str, float]] = {}
    for r in rows:
        rest = ", ".join(f"{k}={v}" for k, v in r["point"].items() if k != factor) or "all"
        lines.setdefault(rest, {})[str(r["point"][factor])] = r["average"]
    fig, ax = _pyplot().subplots(figsize=(6, 4))
    for label, points in lines.items():
        ax.plot([levels.index(level) for level in points], list(points.values()), "o-", label=label)
    for base in untrained:
        ax.axhline(base["average"], color="grey", linestyle="--", linewidth=1)
        ax.annotate(f"untrained, prompt {base['prompt']}", (0, base["average"]), textcoords="offset points",
                    xytext=(2, 3), fontsize=7, color="grey")
    ax.set_xticks(range(len(levels)), levels)
    ax.set_xlabel(factor)
    ax.set_ylabel("average Spearman x100")
    ax.set_title(f"ablation: {factor}")
    if len(lines) > 1:
        ax.legend(fontsize=7)
    return save_figure(fig, png_path)


# --------------------------------------------------------------------------------------------- reports


def _number(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def _row(cells: list) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def _task_header(tasks: list[str], first: list[str], last: tuple[str, ...] = ()) -> list[str]:
    header = first + [SHORT_TASK.get(t, t) for t in tasks] + ["avg", *last]
    return [_row(header), _row(["---"] * len(first) + ["---:"] * (len(tasks) + 1 + len(last)))]


def describe_data(source: str, rows: int) -> str:
    if source.startswith(("http", "hf://")) or "datasets--" in source:
        return f"{source} ({rows:,} triplets, downloaded from the hub)"
    return (f"{source} ({rows:,} triplets, a local file; the paper trains on the 275,601-triplet "
            "nli_for_simcse.csv, so compare with care)")


def eval_seconds(result: dict) -> float | str:
    """The wall time of an STS evaluation (model loading included), as its result recorded it."""
    meta = result["meta"]
    return meta.get("eval_seconds", meta.get("wall seconds", "?"))  # the key's older name, in older results


def _score_cells(result: dict, tasks) -> list[str]:
    return [f"{result['scores'][t]:.2f}" for t in tasks] + [f"**{result['average']:.2f}**"]


def _teacher_time(train: dict) -> str:
    """A run's time for its teacher vectors, and how many texts the teacher embedded then (the rest were cached)."""
    if "teacher_texts" not in train:  # older summaries
        return _number(train.get("teacher_seconds"))
    new, texts = train["teacher_texts_encoded"], train["teacher_texts"]
    return f"{train['teacher_seconds']:.1f} ({new:,} of {texts:,} texts new)"


def _speed(result: dict) -> str:
    return f"{result['sentences_encoded'] / result['encode_seconds']:.0f}" if result.get("encode_seconds") else "?"


def _stages(entry: dict) -> list[tuple[str, dict, dict | None]]:
    """A model's rows of a reproduce report, (label, STS result, training summary): base, the experiment's
    reference run if it has one, the trained model."""
    trained = "distilled" if entry["config"].get("teacher") else "fine-tuned"
    reference = entry.get("reference")
    return [("base", entry["base"], None),
            *([(reference["label"], reference["result"], reference["train"])] if reference else []),
            (trained, entry["tuned"], entry["train"])]


def reproduce_markdown(report: dict) -> str:
    tasks = next(iter(report["models"].values()))["base"]["scores"]
    title = f" ({report['title']})" if report.get("title") else ""
    lines = [f"# cftune reproduce: base vs fine-tuned on {len(tasks)} STS tasks{title}", "",
             f"Experiment `{report['experiment']}`, on {report['machine']}.", ""]
    if report.get("command"):
        lines += ["Command:", "", f"    {report['command']}", ""]
    lines += ["Spearman x100 of cosine similarity against the gold scores (test splits).", ""]
    lines += _task_header(list(tasks), ["model", ""])
    for teacher, result in report.get("teachers", {}).items():
        lines.append(_row([teacher, "teacher", *_score_cells(result, tasks)]))
    for model, entry in report["models"].items():
        base, tuned = entry["base"], entry["tuned"]
        for label, result, _ in _stages(entry):
            lines.append(_row([model, label, *_score_cells(result, tasks)]))
        gains = [tuned["scores"][t] - base["scores"][t] for t in tasks] + [tuned["average"] - base["average"]]
        lines.append(_row([model, "gain", *[f"{g:+.2f}" for g in gains]]))
        relative = [100 * g / abs(b) if b else float("nan")
                    for g, b in zip(gains, [base["scores"][t] for t in tasks] + [base["average"]], strict=True)]
        lines.append(_row([model, "relative gain", *[f"{r:+.1f}%" for r in relative]]))
    if set(tasks) == set(STS_TASKS):  # the published averages are over the 9 tasks: compare like with like
        for ref in PUBLISHED:
            lines.append(_row([f"*{ref['model']}*", "*published*", *["–"] * len(tasks),
                               f"*{ref['average']:.2f}*"]))
        lines += ["", "Rows in italics are published figures, not measured here:", ""]
        lines += [f"- {ref['model']}: {ref['source']}." for ref in PUBLISHED]
    else:
        lines += ["", f"An average over {len(tasks)} of the 9 STS tasks: not comparable with published 9-task "
                      "averages (" + ", ".join(f"{ref['model']} {ref['average']:.2f}" for ref in PUBLISHED) + ")."]
    searched = {model: entry["retrieval"] for model, entry in report["models"].items() if "retrieval" in entry}
    if searched:
        first = next(iter(searched.values()))["base"]
        lines += ["", f"## Search on {first['source']}", "",
                  f"{first['queries']} queries, {first['documents']} documents; cosine search, x100.", "",
                  _row(["model", "", *first["scores"]]), _row(["---", "---", *["---:"] * len(first["scores"])])]
        for model, stages in searched.items():
            for label, stage in (("base", "base"), ("fine-tuned", "tuned")):
                lines.append(_row([model, label, *(f"{v:.2f}" for v in stages[stage]["scores"].values())]))
    lines += ["", "## Vector size and speed", "",
              "Encoding speed: the STS evaluation's distinct sentences per second of encoding, on the machine "
              "that scored it. Training: this run's time (a resumed run: the part after the last resume).", "",
              _row(["model", "", "dimension", "encode (sentences/s)", "training (min)", "teacher vectors (s)"]),
              _row(["---", "---", "---:", "---:", "---:", "---:"])]
    for teacher, result in report.get("teachers", {}).items():
        lines.append(_row([teacher, "teacher", result.get("dimension") or "?", _speed(result), "", ""]))
    for model, entry in report["models"].items():
        for label, result, train in _stages(entry):
            lines.append(_row([model, label, result.get("dimension") or "?", _speed(result),
                               f"{train['train_seconds'] / 60:.1f}" if train else "",
                               _teacher_time(train) if train and "teacher" in train else ""]))
    for model, entry in report["models"].items():
        config, train = entry["config"], entry["train"]
        trained = (f"LoRA r {config['lora']['r']} / alpha {config['lora']['alpha']} on "
                   f"{config['lora']['target_modules']}" if config["finetune"] == "lora" else "full fine-tuning")
        lines += ["", f"## {model}", "",
                  f"- training data: {describe_data(train['data'], train['rows'])}",
                  f"- {train['steps']} steps of {config['batch_size']} rows, lr {config['learning_rate']}, "
                  f"{trained}, temperature {config['temperature']}, "
                  f"hard negatives {'on' if config['hard_negatives'] else 'off'}, prompt `{config['prompt']}`",
                  *([f"- teacher {config['teacher']} (prompt {config['teacher_prompt']}): "
                     f"{config['contrastive_weight']:g} x InfoNCE + {config['distill_weight']:g} x "
                     f"{config['distill_loss']} distillation"] if config.get("teacher") else []),
                  f"- training took {train['train_seconds'] / 60:.1f} min on {train['machine']}"
                  + (f", {train['rows_per_second']:.1f} rows/s" if "rows_per_second" in train else "")
                  + (" (the part after the last resume)" if train.get("resumed_from") else ""),
                  f"- best STS-B dev Spearman x100: {_number(train['best_dev_spearman_x100'])}",
                  f"- STS evaluation: {eval_seconds(entry['base'])} s (base), "
                  f"{eval_seconds(entry['tuned'])} s (fine-tuned)", ""]
        lines += [f"![{name}]({name})" for name in entry["plots"]]
    return "\n".join(lines) + "\n"


def ablation_markdown(report: dict) -> str:
    factors = list(report["grid"])
    tasks = list(report["results"][0]["scores"])
    lines = [f"# cftune ablate: {report['model']}, {report['steps']} steps per configuration", "",
             f"On {report['machine']}. Training data: {describe_data(report['data'], report['rows_per_run'])}.",
             f"STS tasks: {report['tasks']}. No dev set: each configuration keeps its last step.", ""]
    if report.get("command"):
        lines += ["Command:", "", f"    {report['command']}", ""]
    search = all("retrieval" in r for r in report["results"])  # scored on a search set too: nDCG@10 beside
    lines += _task_header(tasks, factors, last=(*(("search nDCG@10",) if search else ()), "train min"))
    best = max(r["average"] for r in report["results"])
    for r in report["results"]:
        average = f"**{r['average']:.2f}**" if r["average"] == best else f"{r['average']:.2f}"
        lines.append(_row([r["point"][f] for f in factors] + [f"{r['scores'][t]:.2f}" for t in tasks]
                          + [average, *([f"{r['retrieval']['nDCG@10']:.2f}"] if search else []),
                             f"{r['train_seconds'] / 60:.1f}"]))
    total = sum(r["train_seconds"] for r in report["results"]) / 60
    lines += ["", f"Training took {total:.0f} min in all (the evaluations are not included)."]
    if report.get("untrained"):
        lines += ["", "The same model untrained, for reference:", ""]
        lines += _task_header(tasks, ["prompt"])
        lines += [_row([b["prompt"]] + [f"{b['scores'][t]:.2f}" for t in tasks] + [f"{b['average']:.2f}"])
                  for b in report["untrained"]]
    fixed = report["fixed_settings"]
    lines += ["", "Fixed settings: " + ", ".join(f"{k}={v}" for k, v in fixed.items()
                                                   if k not in ("data_dir", "skip_bad_rows", "seed")), ""]
    lines += [f"![{name}]({name})" for name in report["plots"]]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------- model cards

CARD_START, CARD_END = "<!-- cftune:start -->", "<!-- cftune:end -->"


def model_card_section(config: dict, summary: dict, sts: StsResult | None = None) -> str:
    """What a saved model's README says about how cftune made it (and how it scored, once it was scored)."""
    from cftune.config import design_settings
    from cftune.design import EmbedderDesign  # only once a model was trained: torch is loaded already

    lora = config["lora"]
    design = summary.get("design") or EmbedderDesign(**design_settings(config)).describe()
    loss = (f"InfoNCE (sentence-transformers' MultipleNegativesRankingLoss), temperature {config['temperature']}, "
            f"hard negatives {'on' if config['hard_negatives'] else 'off'}"
            + (f", Matryoshka at {', '.join(map(str, config['matryoshka_dims']))}"
               if config.get("matryoshka_dims") else ""))
    tuned = (f"LoRA r {lora['r']}, alpha {lora['alpha']}, dropout {lora['dropout']} on {lora['target_modules']}"
             if config.get("finetune", "lora") == "lora" else "full fine-tuning, token embeddings frozen")
    rows = [("base model", f"`{config['model']}`"), ("embedding", design)]
    if config.get("query_prompt") or config.get("document_prompt"):
        rows.append(("named prompts", f"query `{config.get('query_prompt', '')}`, "
                                      f"document `{config.get('document_prompt', '')}`"))
    rows += [("loss", loss),
             ("fine-tuning", tuned + (f" ({summary['trainable_parameters'] / 1e6:.1f}M trainable parameters)"
                                      if summary.get("trainable_parameters") else "")),
             ("data", describe_data(summary["data"], summary["rows"])),
             ("training", f"{summary['steps']} steps of {config['batch_size']} triplets, lr "
                          f"{config['learning_rate']}, {summary['train_seconds'] / 60:.1f} min on {summary['machine']}"
                          + (f", {summary['rows_per_second']:.1f} rows/s" if "rows_per_second" in summary else "")
                          + (" (the part after the last resume)" if summary.get("resumed_from") else ""))]
    lines = [CARD_START, "## How cftune made this model", "",
             "Contrastive fine-tuning of a language model into a text embedder (Ukarapol, Lee, Xin 2024, "
             "'Improving Text Embeddings for Smaller Language Models Using Contrastive Fine-tuning'), with cftune.",
             "", "| | |", "|---|---|", *(f"| {name} | {value} |" for name, value in rows), ""]
    if sts is not None:
        lines += [f"### STS, Spearman x100 of cosine similarity ({sts.precision})", "", sts_table(sts), ""]
    return "\n".join([*lines, CARD_END])


def write_model_card_section(folder: Path, section: str) -> None:
    """Put ``section`` into ``folder``/README.md under its title, replacing an earlier cftune section."""
    path = Path(folder) / "README.md"
    text = path.read_text(encoding="utf-8") if path.is_file() else "# Model\n"
    if CARD_START in text and CARD_END in text:
        before, _, rest = text.partition(CARD_START)
        text = before + section + rest.partition(CARD_END)[2]
    else:
        lines = text.splitlines(keepends=True)
        title = next((i for i, line in enumerate(lines) if line.startswith("# ")), -1)
        text = "".join(lines[:title + 1]) + "\n" + section + "\n\n" + "".join(lines[title + 1:])
    write_atomic(path, text)


def model_card_section_of(folder: Path) -> str | None:
    """The cftune section of a saved model's README, if it has one."""
    path = Path(folder) / "README.md"
    text = path.read_text(encoding="utf-8") if path.is_file() else ""
    if CARD_START not in text or CARD_END not in text:
        return None
    return CARD_START + text.partition(CARD_START)[2].partition(CARD_END)[0] + CARD_END

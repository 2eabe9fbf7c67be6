"""Command line: thin subcommands that parse arguments and call the library."""

from __future__ import annotations

import argparse
import logging
import re
import shlex
import sys
import time
from pathlib import Path

from cftune.errors import CftuneError, ConfigError

# Each command checks all its arguments, inputs and output locations first, with light modules only (no torch):
# a mistake answers in well under a second, and nothing slow runs before it.


def add_eval_command(commands) -> None:
    """`cftune eval` and its flags."""
    ev = commands.add_parser("eval", help="Spearman x100 on the 9 STS tasks",
                             description="Score a model on the STS benchmarks (cosine vs gold, Spearman x100).")
    add_model_arguments(ev)
    ev.add_argument("--tasks", default="all", help="all, a comma list such as STS12,SICK-R, or none (with "
                                                   "--retrieval: search only)")
    ev.add_argument("--retrieval", metavar="DIR", help="also score search on your own files: DIR holds "
                    "corpus.jsonl, queries.jsonl and qrels/test.tsv or qrels.jsonl (the BEIR layout), or name "
                    "the judgements file (DIR/qrels/dev.tsv); nDCG@10, MRR@10, recall@100")
    ev.add_argument("--data-dir", help="folder with sts/<TASK>.jsonl (default: $CFTUNE_DATA_DIR, else the hub)")
    ev.add_argument("--out", help="write OUT.json and OUT.md, e.g. results/NAME")
    ev.add_argument("--max-length", type=int_in(1), help="read at most N tokens of a text (default: the model's "
                    "max_seq_length, a trained model's max_length); documents are long")
    ev.add_argument("--mteb-format", metavar="DIR", help="also write MTEB's result files, "
                    "DIR/MODEL/no_revision_available/TASK.json (what mteb.load_results reads)")
    ev.add_argument("--batch-size", type=int_in(1), default=32, help="texts per encode batch (default: 32)")
    ev.add_argument("--dim", help="score the vectors cut to their first N numbers (Matryoshka models); a comma "
                                  "list scores each length from one encoding pass, e.g. 640,256,128,64")
    ev.add_argument("--prompt-name", help="a named prompt of the model put before every text, e.g. STS for "
                                          "EmbeddingGemma (sentence-transformers' prompts)")
    ev.set_defaults(run=_eval)


def _eval(args: argparse.Namespace) -> None:
    from cftune.data import check_sts_inputs, load_retrieval_set
    from cftune.io import check_output_file
    from cftune.reports import mteb_result_file, report_file

    sts = args.tasks != "none"
    if sts:
        check_sts_inputs(args.tasks, args.data_dir)  # a mistyped task or a missing file fails now
    if args.retrieval:
        load_retrieval_set(args.retrieval)  # so does a bad retrieval file (it is read again, cheaply, later)
    dimensions = parse_dimensions(args.dim) or [None]
    if args.retrieval and len(dimensions) > 1:
        raise ConfigError("--dim with --retrieval takes one vector length (search is scored at one length)")
    if args.mteb_format and (not sts or len(dimensions) > 1):
        raise ConfigError("--mteb-format writes STS scores at one vector length: give --tasks and at most one "
                          "--dim")
    for task in check_sts_inputs(args.tasks, args.data_dir) if args.mteb_format else ():
        check_output_file(mteb_result_file(args.mteb_format, args.model, task.name))
    if args.out:  # the files the reports will write
        suffixes = [".json", ".md"] + ([".png"] if len(dimensions) > 1 else []) if sts else []
        for suffix in suffixes + ([".retrieval.json", ".retrieval.md"] if args.retrieval else []):
            check_output_file(report_file(args.out, suffix))
    check_model_arguments(args)
    model = load_model(args)
    from cftune.encoding import use_prompt_name  # torch: only once the inputs are checked

    use_prompt_name(model, args.prompt_name)
    if args.max_length:
        model.max_seq_length = args.max_length
    if sts:
        _eval_sts(args, model, dimensions)
    if args.retrieval:
        _eval_retrieval(args, model, dimensions[0])


def _eval_retrieval(args: argparse.Namespace, model, dimension: int | None) -> None:
    from cftune.encoding import set_output_dimension
    from cftune.evaluation import evaluate_retrieval
    from cftune.io import machine
    from cftune.reports import retrieval_table, write_retrieval_report

    set_output_dimension(model, dimension)  # the vectors cut to their first N numbers (Matryoshka models)
    result = evaluate_retrieval(model, args.retrieval, batch_size=args.batch_size, precision=args.precision)
    result.meta = {"model": args.model + (f" + adapter {args.adapter}" if args.adapter else ""),
                   "command": args.command_line, "machine": machine(), "dimension": dimension}
    print(retrieval_table(result))
    for path in write_retrieval_report(result, args.out) if args.out else ():
        print(f"wrote {path}")


def _eval_sts(args: argparse.Namespace, model, dimensions: list[int | None]) -> None:
    from cftune.evaluation import evaluate_sts_dimensions
    from cftune.io import machine
    from cftune.reports import sts_table, write_dimensions_report, write_mteb_results, write_sts_report

    started = time.perf_counter()
    results = evaluate_sts_dimensions(model, args.tasks, dimensions, data_dir=args.data_dir,
                                      batch_size=args.batch_size, precision=args.precision)
    meta = {"model": args.model + (f" + adapter {args.adapter}" if args.adapter else ""),
            "command": args.command_line, "machine": machine(),
            "eval_seconds": round(time.perf_counter() - started, 1)}
    for result in results:
        result.meta = dict(meta)
    written: tuple = ()
    if len(results) == 1:
        print(sts_table(results[0]))
        written = write_sts_report(results[0], args.out) if args.out else ()
        if args.mteb_format:
            written = (*written, *write_mteb_results(results[0], args.mteb_format, args.model))
    else:  # one pass, several vector lengths: a table with a row per length, and a plot
        written = write_dimensions_report(results, args.out) if args.out else ()
        for result in results:
            print(f"dimension {result.dimension}: average {result.average:.2f}")
    for path in written:
        print(f"wrote {path}")


def parse_dimensions(text: str | None) -> list[int | None]:
    """--dim "640,256,128" -> [640, 256, 128]; a mistake fails before the model loads."""
    if not text:
        return []
    try:
        sizes = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ConfigError(f"--dim expects whole numbers separated by commas, got {text!r}") from None
    if any(size < 1 for size in sizes):
        raise ConfigError(f"--dim sizes must be >= 1, got {text!r}")
    return [*sizes]


def add_train_command(commands) -> None:
    """`cftune train` and its flags."""
    from cftune.config import recipe_names

    tr = commands.add_parser("train", help="LoRA + InfoNCE fine-tuning on triplets",
                             description="Fine-tune a model into an embedder (recipe file, flags and --set).")
    tr.add_argument("--config", help="recipe: a YAML file or a shipped recipe's name "
                                     f"({', '.join(recipe_names())})")
    tr.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="override a recipe setting, e.g. --set lora.r=16 (repeatable)")
    tr.add_argument("--model", help="model to fine-tune (any --model of eval)")
    tr.add_argument("--data", help="nli (SimCSE triplets), a CSV/JSONL/Parquet file, a dataset folder or a hub "
                                   "dataset id (org/name[:config]): anchor,positive[,negative...] rows, or "
                                   "sentence1,sentence2,score with --loss cosent|angle; or a BEIR search folder "
                                   "(corpus, queries, qrels): (query, document) pairs")
    tr.add_argument("--similarity-data", help="a second set (e.g. nli) trained in alternate batches without the "
                                              "query/document prompts: keeps sentence similarity beside search")
    tr.add_argument("--columns", help='which column is which, e.g. "anchor=question,positive=answer" (default: '
                                      "cftune's names, else by position)")
    tr.add_argument("--loss", choices=("infonce", "cosent", "angle"),
                    help="infonce (default; anchor,positive[,negative] rows) or cosent/angle (scored pairs)")
    tr.add_argument("--data-dir", help="local data folder (nli/*.csv, sts/STSBenchmark.dev.jsonl)")
    tr.add_argument("--prompt", help="auto (default: eol for a decoder LM, none for an encoder) | none | eol | "
                                     "template with {text}")
    tr.add_argument("--epochs", type=float, help="passes over the data (default: 1)")
    tr.add_argument("--max-steps", type=int_in(1), help="a number of steps instead of --epochs")
    tr.add_argument("--batch-size", type=int_in(1), help="rows per step (default: 32)")
    tr.add_argument("--teacher", help="distil from this sentence-transformers model (alias, hub id or folder): "
                                      "its vectors of the training texts, cached once (see teacher-cache)")
    tr.add_argument("--teacher-prompt", help="one of the teacher's named prompts, e.g. STS for EmbeddingGemma")
    tr.add_argument("--out", required=True, help="run folder, e.g. runs/NAME")
    tr.add_argument("--resume", action="store_true", help="continue from the last checkpoint in --out")
    tr.set_defaults(run=_train)


def _train(args: argparse.Namespace) -> None:
    from cftune.config import check_trackers_installed, load_config, training_format
    from cftune.data import check_training_inputs
    from cftune.runs import check_run_target
    from cftune.sources import check_source, check_teacher

    flags = {"model": args.model, "data": args.data, "similarity_data": args.similarity_data,
             "data_dir": args.data_dir, "columns": args.columns,
             "loss": args.loss, "max_steps": args.max_steps, "epochs": args.epochs, "batch_size": args.batch_size,
             "prompt": args.prompt, "teacher": args.teacher, "teacher_prompt": args.teacher_prompt}
    config = load_config(args.config, [f"{key}={value}" for key, value in flags.items() if value is not None]
                         + args.set)
    check_trackers_installed(config.report_to)
    check_run_target(Path(args.out), config, args.resume)
    check_training_inputs(config.data, config.data_dir, form=training_format(config),
                          skip_bad_rows=config.skip_bad_rows, dev_set=config.eval_steps > 0)
    if config.similarity_data:
        check_training_inputs(config.similarity_data, config.data_dir, skip_bad_rows=config.skip_bad_rows,
                              dev_set=False)
    check_source(config.model)
    if config.teacher:
        check_teacher(config.teacher, config.teacher_prompt)
    from cftune.training import train

    out = train(config, args.out, resume=args.resume)
    print(f"trained model: {out}  (evaluate: cftune eval --model {out})")


def add_teacher_cache_command(commands) -> None:
    """`cftune teacher-cache` and its flags."""
    tc = commands.add_parser("teacher-cache", help="compute a distillation teacher's vectors once, ahead of train",
                             description="Embed texts with a teacher into cftune's cache (by teacher weights, "
                                         "prompt and text), resumable after a kill; train --teacher reuses them.")
    tc.add_argument("--teacher", required=True, help="alias, hub id or sentence-transformers folder")
    tc.add_argument("--teacher-prompt", help="one of the teacher's named prompts, e.g. STS")
    tc.add_argument("--data", help="training data as train takes it: nli or a CSV/JSONL of anchor,positive[,negative]")
    tc.add_argument("--data-dir", help="local data folder for --data nli")
    tc.add_argument("--texts", action="append", default=[], metavar="FILE",
                    help="more texts: .txt (a line each), .jsonl/.csv/.parquet with --column (repeatable)")
    tc.add_argument("--column", default="text", help="the text column of --texts tables (default: text)")
    tc.add_argument("--batch-size", type=int_in(1), default=32)
    tc.add_argument("--precision", default="auto", choices=("auto", "float32", "bfloat16"))
    tc.set_defaults(run=_teacher_cache)


def _teacher_cache(args: argparse.Namespace) -> None:
    from cftune.data import check_text_input, iter_texts, load_training_data
    from cftune.sources import check_teacher

    check_teacher(args.teacher, args.teacher_prompt)
    for path in args.texts:
        check_text_input(path, column=args.column)
    texts = [t for column in load_training_data(args.data, args.data_dir).columns.values() for t in column] \
        if args.data else []
    texts += [row.text for path in args.texts for row in iter_texts(path, column=args.column)]
    if not texts:
        raise ConfigError("teacher-cache: nothing to embed; give --data and/or --texts")
    from cftune.distill import Teacher, fill_cache

    started = time.perf_counter()
    cache = fill_cache(Teacher.of(args.teacher, args.teacher_prompt, args.precision), texts,
                       batch_size=args.batch_size)
    print(f"{len(set(texts))} texts in {cache.folder} ({len(cache.rows)} cached in all, "
          f"{time.perf_counter() - started:.0f} s)")


def add_split_queries_command(commands) -> None:
    """`cftune split-queries` and its flags."""
    sq = commands.add_parser("split-queries", help="hold out some queries of a retrieval folder as a dev set",
                             description="Copy a BEIR folder (corpus.jsonl, queries.jsonl, qrels) with its "
                                         "judgements split by query into qrels/train.tsv and qrels/dev.tsv.")
    sq.add_argument("folder", help="BEIR folder (its qrels/train.tsv), or the judgements file to split")
    sq.add_argument("--dev", type=int_in(1), required=True, help="queries to hold out")
    sq.add_argument("--seed", type=int, default=0, help="which queries, at random (default: 0)")
    sq.add_argument("--out", required=True, help="new folder (or one this command wrote, replaced)")
    sq.set_defaults(run=_split_queries)


def _split_queries(args: argparse.Namespace) -> None:
    from cftune.data import SPLIT_MARK, split_queries
    from cftune.io import check_output_folder

    check_output_folder(args.out, ours=lambda folder: (folder / SPLIT_MARK).is_file())
    out = split_queries(args.folder, args.out, dev=args.dev, seed=args.seed)
    print(f"wrote {out}: qrels/train.tsv and qrels/dev.tsv ({args.dev} dev queries); train with "
          f"--data {out}, score with eval --retrieval {out}/qrels/dev.tsv")


def add_export_command(commands) -> None:
    """`cftune export` and its flags."""
    ex = commands.add_parser("export", help="a trained run -> standalone sentence-transformers folder")
    ex.add_argument("run_dir", help="run folder written by cftune train")
    ex.add_argument("--merge", action="store_true", help="merge LoRA into the weights (no peft needed to load)")
    ex.add_argument("--dtype", choices=("fp32", "bf16", "fp16"), default="fp32",
                    help="the weights' type on disk: bf16 or fp16 halve the folder; it then loads and runs in "
                         "that type (default: fp32)")
    ex.add_argument("--out", required=True, help="new folder, or an earlier export (replaced atomically)")
    ex.add_argument("--overwrite", action="store_true",
                    help="replace --out even when it holds something other than a cftune export")
    ex.set_defaults(run=_export)


def _export(args: argparse.Namespace) -> None:
    from cftune.runs import check_export_target

    check_export_target(Path(args.run_dir), Path(args.out), args.overwrite)
    from cftune.export import export

    print(f"wrote {export(args.run_dir, args.out, merge=args.merge, overwrite=args.overwrite, dtype=args.dtype)}")


def add_push_command(commands) -> None:
    """`cftune push` and its flags."""
    pu = commands.add_parser("push", help="upload a trained model folder to the Hugging Face hub",
                             description="Create the hub repo if needed and upload a run or export folder in one "
                                         "commit (checkpoints/ stay home). Needs internet and a write token.")
    pu.add_argument("folder", help="a cftune train run folder or a cftune export")
    pu.add_argument("--repo", required=True, help="owner/name on the hub")
    pu.add_argument("--private", action="store_true", help="create the repo private")
    pu.add_argument("--token", help="hub token (default: $HF_TOKEN or `hf auth login`'s)")
    pu.set_defaults(run=_push)


def _push(args: argparse.Namespace) -> None:
    from cftune.hub import push

    print(f"pushed: {push(args.folder, args.repo, private=args.private, token=args.token)}")


def add_reproduce_command(commands) -> None:
    """`cftune reproduce` and its flags."""
    from cftune.config import EXPERIMENTS

    rp = commands.add_parser("reproduce", help="the paper's experiment: base vs fine-tuned STS, with a report",
                             description="For each model: STS of the base model, fine-tuning, STS of the result; "
                                         "writes OUT/report.md (+ .json, plots). Re-running skips finished stages.")
    rp.add_argument("--experiment", "--recipe", dest="experiment", default="cpu-small", choices=EXPERIMENTS,
                    help="cpu-quick: gemma3-270m, short training, 3 STS tasks (minutes); cpu-small: the CPU recipe "
                         "on all 9 tasks (hours); paper: the paper's three hub models and settings (GPU, internet). "
                         "--recipe is its older name")
    rp.add_argument("--models", help="comma list of models (default: the recipe's)")
    rp.add_argument("--data-dir", help="local data folder (nli/*.csv, sts/*.jsonl; default: $CFTUNE_DATA_DIR, "
                                       "else the hub)")
    rp.add_argument("--tasks", help="STS tasks to report (default: the experiment's; all 9 but for cpu-quick)")
    rp.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="override a recipe setting for every model, e.g. --set max_steps=50 (repeatable)")
    rp.add_argument("--retrieval", metavar="DIR", help="also score search with the base and the fine-tuned model "
                    "on your files (BEIR layout, as eval --retrieval)")
    rp.add_argument("--out", required=True, help="report folder, e.g. reports/NAME")
    rp.set_defaults(run=_reproduce)


def _reproduce(args: argparse.Namespace) -> None:
    check_report_arguments(args)
    from cftune.experiments import reproduce

    models = [m.strip() for m in args.models.split(",") if m.strip()] if args.models else None
    report = reproduce(args.out, experiment=args.experiment, models=models, data_dir=args.data_dir, tasks=args.tasks,
                       settings=args.set, retrieval=args.retrieval, command=args.command_line)
    print(f"wrote {report}")


def add_ablate_command(commands) -> None:
    """`cftune ablate` and its flags."""
    ab = commands.add_parser("ablate", help="short runs over a grid of settings, with a table and plots",
                             description="Train and evaluate every combination of the --grid levels with a short "
                                         "budget. Re-running skips finished configurations.")
    ab.add_argument("--grid", action="append", default=[], metavar="FACTOR=LEVEL,LEVEL",
                    help="e.g. lr=1e-5,5e-5,2e-4  hard_negatives=on,off  prompt=none,eol  hardness=0,5 "
                         "(any training setting; repeatable)")
    ab.add_argument("--steps", type=int, required=True, help="training steps per configuration")
    ab.add_argument("--model", help="model to fine-tune (default: the recipe's)")
    ab.add_argument("--config", default="cpu-gemma3-270m", help="recipe the grid varies (name or YAML path)")
    ab.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="fix another setting")
    ab.add_argument("--data-dir", help="local data folder (default: $CFTUNE_DATA_DIR, else the hub)")
    ab.add_argument("--tasks", default="all", help="STS tasks to score each configuration on (default: all 9)")
    ab.add_argument("--retrieval", metavar="DIR", help="also score search with each configuration on your files "
                    "(BEIR layout, or its qrels file, as eval --retrieval); the table gains nDCG@10")
    ab.add_argument("--out", required=True, help="report folder, e.g. reports/NAME")
    ab.set_defaults(run=_ablate)


def _ablate(args: argparse.Namespace) -> None:
    check_report_arguments(args)
    from cftune.experiments import ablate, parse_grid

    report = ablate(args.out, grid=parse_grid(args.grid), steps=args.steps, model=args.model, recipe=args.config,
                    data_dir=args.data_dir, tasks=args.tasks, settings=args.set, retrieval=args.retrieval,
                    command=args.command_line)
    print(f"wrote {report}")


def add_mine_command(commands) -> None:
    """`cftune mine` and its flags."""
    mi = commands.add_parser("mine", help="add hard negatives to (anchor, positive) pairs, for train --data",
                             description="Find hard negatives for each pair among all positives with a model "
                                         "(sentence-transformers' mine_hard_negatives) and write anchor, positive, "
                                         "negative_1..n rows.")
    add_model_arguments(mi)
    mi.add_argument("--input", required=True, help="CSV/JSONL of anchor,positive (SimCSE headers work too), or a "
                    "retrieval folder (BEIR: its qrels/train.tsv pairs; candidates from its whole corpus)")
    mi.add_argument("--out", required=True, help="mined.csv or mined.jsonl")
    mi.add_argument("--negatives", type=int_in(1), default=3, help="hard negatives per row (default: 3)")
    mi.add_argument("--range-min", type=int_in(0), default=10,
                    help="skip the anchor's N nearest texts, likely unmarked positives (default: 10)")
    mi.add_argument("--range-max", type=int_in(1), default=50, help="look no further than the N nearest (default: 50)")
    mi.add_argument("--margin", type=float, default=0.05, help="a negative scores at least this far below the "
                    "anchor's positive: a fraction of its score (default: 0.05, NV-Retriever's choice)")
    mi.add_argument("--absolute-margin", action="store_true", help="read --margin as a cosine difference")
    mi.add_argument("--sampling", choices=["top", "random"], default="top",
                    help="the hardest candidates that pass, or a random choice of them")
    mi.add_argument("--batch-size", type=int_in(1), default=32)
    mi.set_defaults(run=_mine)


def _mine(args: argparse.Namespace) -> None:
    from cftune.data import is_retrieval_folder, load_retrieval_set, read_triplets
    from cftune.mining import check_mined_output

    check_mined_output(args.out)  # a wrong --out or a bad pairs file fails now, before the model loads
    load_retrieval_set(args.input, split="train") if is_retrieval_folder(args.input) else read_triplets(args.input)
    check_model_arguments(args)
    from cftune.mining import mine

    summary = mine(load_model(args), args.input, args.out, negatives=args.negatives, range_min=args.range_min,
                   range_max=args.range_max, margin=args.margin, relative=not args.absolute_margin,
                   sampling=args.sampling, batch_size=args.batch_size, precision=args.precision)
    if any(summary.prompts):
        print(f"anchors embedded with the model's {summary.prompts[0]!r} prompt, candidates with its "
              f"{summary.prompts[1]!r} prompt")
    print(f"wrote {summary.out}: {summary.rows} rows with {summary.negatives} hard negatives each; "
          f"{summary.skipped} pairs skipped (fewer than {summary.negatives} candidates passed the guards) "
          f"in {summary.seconds:.1f} s (train on it: cftune train --data {summary.out})")


def add_embed_command(commands) -> None:
    """`cftune embed` and its flags."""
    em = commands.add_parser("embed", help="embed every text of a file into .npy or .parquet",
                             description="Stream a .txt (a text a line), .jsonl, .csv or .parquet file through "
                                         "the model; the output appears atomically when complete.")
    add_model_arguments(em)
    em.add_argument("--input", required=True, help="texts.{txt,jsonl,csv,parquet}")
    em.add_argument("--column", default="text", help="the text column of .jsonl/.csv/.parquet (default: text)")
    em.add_argument("--id-column", help="column of ids kept beside the vectors (default: the line number)")
    em.add_argument("--out", required=True, help="vectors.npy (+ vectors.npy.ids.jsonl) or vectors.parquet")
    em.add_argument("--batch-size", type=int_in(1), default=32)
    em.add_argument("--normalize", action="store_true", help="unit-length vectors (dot product = cosine)")
    em.add_argument("--prompt-name", help="a named prompt of the model, put before each text: query or document "
                                          "(models trained with query_prompt / document_prompt)")
    em.add_argument("--dim", type=int_in(1), help="keep the first N numbers of each vector (Matryoshka models; "
                                            "cut before --normalize)")
    em.add_argument("--skip-bad-rows", action="store_true", help="count and skip bad rows instead of stopping")
    em.set_defaults(run=_embed)


def _embed(args: argparse.Namespace) -> None:
    from cftune.data import check_text_input
    from cftune.embedding import check_output_path

    check_output_path(args.out)  # a wrong --out or input fails now, not after the model loads
    check_text_input(args.input, column=args.column, id_column=args.id_column, skip_bad_rows=args.skip_bad_rows)
    check_model_arguments(args)
    from cftune.embedding import embed_file
    from cftune.encoding import set_output_dimension

    model = load_model(args)
    set_output_dimension(model, args.dim)
    summary = embed_file(model, args.input, args.out, column=args.column, id_column=args.id_column,
                         batch_size=args.batch_size, normalize=args.normalize, skip_bad_rows=args.skip_bad_rows,
                         precision=args.precision, prompt_name=args.prompt_name)
    print(f"wrote {summary.out}: {summary.rows} vectors of {summary.dimension} floats in {summary.seconds:.1f} s"
          + (f" ({summary.rows / summary.seconds:.1f} texts/s)" if summary.seconds else ""))
    print_skipped(summary.skipped)


def add_similarity_command(commands) -> None:
    """`cftune similarity` and its flags."""
    si = commands.add_parser("similarity", help="cosine similarity of two texts")
    add_model_arguments(si)
    si.add_argument("a")
    si.add_argument("b")
    si.add_argument("--prompt-name-a", help="a named prompt of the model for A, e.g. query")
    si.add_argument("--prompt-name-b", help="a named prompt of the model for B, e.g. document")
    si.set_defaults(run=_similarity)


def _similarity(args: argparse.Namespace) -> None:
    check_model_arguments(args)
    from cftune.embedding import similarity

    model = load_model(args)
    names = (args.prompt_name_a, args.prompt_name_b)
    print(f"{similarity(model, args.a, args.b, precision=args.precision, prompt_names=names):.4f}")


def add_serve_command(commands) -> None:
    """`cftune serve` and its flags."""
    sv = commands.add_parser("serve", help="OpenAI-compatible HTTP embeddings endpoint",
                             description="POST /v1/embeddings, GET /v1/models, GET /health. Flags also take "
                                         "text-embeddings-inference's names: --model-id, --served-model-name, "
                                         "--dtype, --max-client-batch-size, --auto-truncate.")
    add_model_arguments(sv, tei_names=True)

    sv.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback only)")
    sv.add_argument("--port", type=int_in(0, 65535), default=8000)
    sv.add_argument("--name", "--served-model-name", help="model name shown to clients (default: the --model "
                    "value); requests may name any model unless --strict-model-name")
    sv.add_argument("--strict-model-name", action="store_true",
                    help="answer 404 model_not_found to a request naming another model than --name")
    sv.add_argument("--default-prompt-name", help="the model's named prompt (e.g. query) for requests that name "
                    "none (default: the model's own default)")
    sv.add_argument("--max-inputs", "--max-client-batch-size", type=int_in(1), default=2048,
                    help="most texts per request (default: 2048, OpenAI's limit)")
    sv.add_argument("--max-batch", type=int_in(1), default=256,
                    help="most texts encoded together from concurrent requests (default: 256)")
    sv.add_argument("--max-tokens", type=int_in(1),
                    help="longest text accepted, in tokens, counting the template and special tokens (default "
                         "and most: the model's max_seq_length); a longer one gets 400 unless truncated")
    sv.add_argument("--auto-truncate", action="store_true",
                    help='embed the first --max-tokens tokens of a longer text instead of refusing it, unless a '
                         'request says "truncate": false (TEI\'s flag)')
    sv.add_argument("--max-queue", type=int_in(1), default=4096,
                    help="most texts waiting for the encoder; requests beyond it get 429 (default: 4096)")
    sv.add_argument("--max-request-bytes", type=int_in(1), default=8 * 2**20,
                    help="largest request body; larger ones get 413 (default: 8 MiB)")
    sv.add_argument("--api-key", help="require 'Authorization: Bearer KEY' (default: $CFTUNE_API_KEY, "
                                      "else no key)")
    sv.add_argument("--no-batching", action="store_true", help="encode each request alone (for comparison)")
    sv.add_argument("--calibration", metavar="FILE", help="texts (a .txt line each, or .jsonl/.csv/.parquet with a "
                    "text column) whose vectors set the ranges of embedding_type int8/uint8 outputs")
    sv.add_argument("--no-normalize", action="store_true",
                    help="return the raw vectors; by default they are unit length, as OpenAI's are")
    sv.set_defaults(run=_serve)


def _serve(args: argparse.Namespace) -> None:
    import os

    from cftune.data import iter_texts

    # int8/uint8 outputs scale each dimension to the range these texts span; a bad file fails before the model
    texts = [row.text for row in iter_texts(args.calibration)] if args.calibration else []
    check_model_arguments(args)
    from cftune.encoding import encode  # torch: only once the inputs are checked
    from cftune.serving import API_KEY_ENV, ServeSettings, serve, served_max_tokens

    model = load_model(args)
    max_tokens = served_max_tokens(model, args.max_tokens)  # more than the model reads fails now, in one line
    calibration = encode(model, texts, precision=args.precision).numpy() if texts else None
    settings = ServeSettings(
        max_inputs=args.max_inputs, max_batch=args.max_batch, max_tokens=max_tokens, max_queue=args.max_queue,
        max_request_bytes=args.max_request_bytes, api_key=args.api_key or os.environ.get(API_KEY_ENV) or None,
        precision=args.precision, batching=not args.no_batching, normalize=not args.no_normalize,
        auto_truncate=args.auto_truncate, strict_model_name=args.strict_model_name,
        default_prompt_name=args.default_prompt_name)
    serve(model, args.name or args.model, settings, host=args.host, port=args.port, calibration=calibration)


def add_doctor_command(commands) -> None:
    """`cftune doctor` and its flags."""
    dr = commands.add_parser("doctor", help="versions, hardware, precision, data and models found here",
                             description="Print what this machine has and what cftune will use on it; with "
                                         "--benchmark, estimate an STS pass and a training step from a few passes "
                                         "of a random-weight Gemma 3 270M body (nothing downloaded).")
    dr.add_argument("--data-dir", help="data folder to check (default: $CFTUNE_DATA_DIR)")
    dr.add_argument("--device", help="cpu, cuda, ... (default: best available)")
    dr.add_argument("--benchmark", action="store_true",
                    help="time a Gemma 3 270M-shaped body and extrapolate an STS pass and a training step")
    dr.set_defaults(run=_doctor)


def _doctor(args: argparse.Namespace) -> None:
    from cftune.doctor import doctor

    doctor(data_dir=args.data_dir, device=args.device, run_benchmark=args.benchmark)


def add_model_arguments(parser: argparse.ArgumentParser, tei_names: bool = False) -> None:
    """--model and what goes with it, the same for every command that loads one embedder; ``tei_names``: also
    under the names text-embeddings-inference gives them (--model-id, --dtype), for serve."""
    from cftune.aliases import ALIASES, DEFAULT_MODEL  # light modules: --help must not import torch
    from cftune.config import ATTENTIONS, POOLINGS, PRECISIONS, QUANTIZATIONS

    parser.add_argument("--model", *(["--model-id"] if tei_names else []), default=DEFAULT_MODEL,
                        help=f"alias ({', '.join(ALIASES)}), hub id, HF folder, .gguf file, sentence-transformers "
                             f"folder or cftune run folder (default: {DEFAULT_MODEL})")
    parser.add_argument("--adapter", help="PEFT/LoRA adapter folder applied on top of --model")
    parser.add_argument("--prompt", help='none | eol | a template with {text}, e.g. "Query: {text}" '
                                         "(decoders; default: the model's saved prompt, else none)")
    parser.add_argument("--pooling", choices=POOLINGS, help="for a raw LM: lasttoken (the EOS state, default), "
                        "mean or weightedmean; a saved embedder keeps its own")
    parser.add_argument("--attention", choices=ATTENTIONS, help="for a raw LM: causal (default) or bidirectional "
                        "(Gemma 3); a saved embedder keeps its own")
    parser.add_argument("--layers", type=int, help="for a raw LM: run only its first N transformer layers and pool "
                        "the last of them (default: all); a saved embedder keeps its own")
    parser.add_argument("--pooled-layers", type=int, help="for a raw LM: pool a weighted mean of the last N "
                        "layers (default: 1, the last); a saved embedder keeps its own")
    parser.add_argument("--include-prompt", action=argparse.BooleanOptionalAction, help="for a raw LM with mean or "
                        "weightedmean pooling: --no-include-prompt leaves the prompt's tokens out of the mean "
                        "(default: included); a saved embedder keeps its own")
    parser.add_argument("--precision", *(["--dtype"] if tei_names else []), default="auto", choices=PRECISIONS,
                        help="auto = bf16 where the hardware has it natively (CUDA, AVX512-BF16 or AMX)")
    parser.add_argument("--quantize", choices=QUANTIZATIONS, help="int8: int8 weights and activations in every "
                        "linear layer, on CPUs (speed and scores measured: results/inference-speed/)")
    parser.add_argument("--device", help="cpu, cuda, ... (default: best available)")


def check_report_arguments(args: argparse.Namespace) -> None:
    """reproduce's and ablate's --out (new, empty or their own) and --data-dir, checked before torch is imported."""
    from cftune.data import existing_data_dir
    from cftune.runs import check_report_target

    check_report_target(Path(args.out))
    existing_data_dir(args.data_dir)


def check_model_arguments(args: argparse.Namespace) -> None:
    """--model and --adapter exist (a hub id: on the hub, or in the local cache offline), and a named prompt
    asked for is one the model declares, checked before torch is imported."""
    from cftune.config import check_quantization
    from cftune.sources import check_adapter, check_prompt_declared, check_source

    if args.quantize and args.device:  # without --device, finding the device imports torch: load_model checks it
        check_quantization(args.quantize, args.device)
    check_source(args.model)
    if args.adapter is not None:
        check_adapter(args.adapter)
        return  # an adapter's folder may bring prompts of its own: checked once loaded
    for flag in ("prompt_name", "prompt_name_a", "prompt_name_b", "default_prompt_name"):
        check_prompt_declared(args.model, getattr(args, flag, None), "--" + flag.replace("_", "-"))


def print_skipped(skipped: list[str], shown: int = 20) -> None:
    """Every row a command left out, by file and line (the first ``shown``, then how many more)."""
    if skipped:
        print(f"skipped {len(skipped)} bad row{'s' if len(skipped) != 1 else ''}:", *skipped[:shown], sep="\n  ",
              file=sys.stderr)
        if len(skipped) > shown:
            print(f"  ... and {len(skipped) - shown} more", file=sys.stderr)


def load_model(args: argparse.Namespace):
    """The embedder that add_model_arguments describes."""
    from cftune.config import check_quantization
    from cftune.design import EmbedderDesign
    from cftune.models import load_embedder, prepare_for_inference

    design = EmbedderDesign(prompt=args.prompt, pooling=args.pooling, attention=args.attention, layers=args.layers,
                            pooled_layers=args.pooled_layers, include_prompt=args.include_prompt)
    check_quantization(args.quantize, args.device)  # before the model loads
    model = load_embedder(args.model, design, adapter=args.adapter, device=args.device)
    return prepare_for_inference(model, precision=args.precision, quantize=args.quantize)


def int_in(low: int, high: int | None = None):
    """argparse type: an int in [low, high], so a bad value stops the command before the model loads."""
    def parse(value: str) -> int:
        try:
            number = int(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{value!r} is not a whole number") from None
        if number < low or (high is not None and number > high):
            raise argparse.ArgumentTypeError(f"{number} is out of range: " + (
                f"{low}..{high}" if high is not None else f"at least {low}"))
        return number
    return parse



COMMANDS = [  # each command's flags, beside its handler above
    add_eval_command,
    add_train_command,
    add_teacher_cache_command,
    add_split_queries_command,
    add_export_command,
    add_push_command,
    add_reproduce_command,
    add_ablate_command,
    add_mine_command,
    add_embed_command,
    add_similarity_command,
    add_serve_command,
    add_doctor_command,
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cftune", description="Contrastive fine-tuning of small LMs into "
                                     "text embedders, and their STS evaluation.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    commands = parser.add_subparsers(dest="command", required=True)
    for add_command in COMMANDS:  # in the order --help lists them
        add_command(commands)
    return parser


def reference_markdown(width: int = 100) -> str:
    """Every command's --help as one Markdown page (docs/cli.md; a test keeps that file equal to this)."""
    import os

    before = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = str(width)  # argparse wraps to the terminal's width: fix it
    try:
        parser = build_parser()
        subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        python = ".".join(map(str, sys.version_info[:2]))  # argparse's layout changes between versions
        pages = ["# cftune command reference", "",
                 f"Generated from the parser with Python {python} (`python -m cftune.cli reference > docs/cli.md`); "
                 "a test checks it.", "", "```", parser.format_help().rstrip(), "```", ""]
        for name, sub in subparsers.choices.items():
            pages += [f"## cftune {name}", "", "```", sub.format_help().rstrip(), "```", ""]
    finally:
        if before is None:
            os.environ.pop("COLUMNS", None)
        else:
            os.environ["COLUMNS"] = before
    return "\n".join(pages)


def in_flags(err: CftuneError, parser: argparse.ArgumentParser, command: str) -> str:
    """The error as the command line says it. The library names settings as Python does: a message about one
    starts "tasks: ...", and advice quotes them in backticks ("add `resume`", "`out` runs/x: ..."); here each
    becomes the flag that sets it ("--tasks: ...", "add --resume", "--out runs/x: ..."). A setting this command
    has no flag for keeps its name."""
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    actions = {action.dest: action for action in subparsers.choices[command]._actions if action.option_strings}
    message, setting = str(err), getattr(err, "setting", None)
    if setting is not None and setting in actions and message.startswith(f"{setting}: "):
        message = f"`{setting}`" + message[len(setting):]

    def flag(quoted: re.Match) -> str:
        name, value = quoted[1], quoted[2]
        action = actions.get(name)
        if action is None:
            return quoted[0]
        takes_value = action.nargs != 0
        return action.option_strings[0] + (f" {value}" if value and takes_value else "")

    return re.sub(r"`(\w+)(?:=([^`]*))?`", flag, message)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv == ["reference"]:  # for docs/cli.md, not a user command
        print(reference_markdown(), end="")
        return 0
    parser = build_parser()
    args = parser.parse_args(argv)
    args.command_line = shlex.join(["cftune", *argv])  # recorded in reports: what produced a result
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # transformers imports torchao whenever it is installed; on a CPU it warns about its missing CUDA
    # kernels and torch about its enum registrations, on every command: nothing a user can act on.
    for library_noise in ("torchao", "torch.utils._pytree"):
        logging.getLogger(library_noise).setLevel(logging.ERROR)
    for chatty in ("httpx", "httpx2"):  # a line for every request huggingface_hub makes
        logging.getLogger(chatty).setLevel(logging.WARNING)
    try:
        args.run(args)
    except CftuneError as err:  # a user's mistake, in one line; anything else is a bug and keeps its traceback
        print(f"cftune: error: {in_flags(err, parser, args.command)}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

import json
import logging
import re

import pytest
from safetensors.torch import load_file

from cftune import experiments
from cftune.cli import main
from cftune.config import ConfigError
from cftune.data import STS_TASKS
from cftune.design import EmbedderDesign
from cftune.experiments import parse_grid, reproduce
from cftune.export import export
from cftune.models import prepare_for_inference
from cftune.reports import model_card_section_of, reproduce_markdown
from conftest import TRIPLETS, assert_is_a_plot, write_retrieval_set

QUICK = ["max_steps=6", "warmup_steps=1", "batch_size=8", "eval_steps=3", "save_steps=3", "logging_steps=1",
         "learning_rate=1e-3", "precision=float32", "prompt=eol"]
TASKS = "STS12,BIOSSES"


@pytest.fixture
def data_dir(nli_dir, sts_dir):
    assert nli_dir == sts_dir  # both fixtures fill the same tmp_path: nli/, sts/STS12, BIOSSES, STS-B dev
    return str(nli_dir)


def forbid(monkeypatch, *names):
    """Make a stage's work fail loudly, to prove that a re-run does not redo it."""
    def refuse(*args, **kwargs):
        raise AssertionError("a finished stage was run again")

    for name in names:
        module, _, attr = name.rpartition(".")
        monkeypatch.setattr(f"{module}.{attr}", refuse)


def md_rows(markdown: str) -> dict[tuple[str, str], list[str]]:
    rows = {}
    for line in markdown.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if line.startswith("|") and len(cells) > 2:
            rows[(cells[0], cells[1])] = cells[2:]
    return rows


def test_reproduce_writes_the_report_and_resumes_after_a_crash(tiny_models, data_dir, tmp_path, monkeypatch):
    model, out = str(tiny_models["llama"]), tmp_path / "report"
    real_evaluate = experiments.evaluate_sts
    calls = []

    def crash_on_second_eval(*args, **kwargs):  # base eval works, training works, tuned eval "is killed"
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_evaluate(*args, **kwargs)

    monkeypatch.setattr(experiments, "evaluate_sts", crash_on_second_eval)
    with pytest.raises(KeyboardInterrupt):
        reproduce(out, models=[model], data_dir=data_dir, tasks=TASKS, settings=QUICK)
    base_json = out / "llama" / "base.json"
    base_written = base_json.stat().st_mtime_ns
    assert (out / "runs" / "llama" / "train_summary.json").exists() and not (out / "llama" / "tuned.json").exists()

    monkeypatch.setattr(experiments, "evaluate_sts", real_evaluate)
    forbid(monkeypatch, "cftune.training.train")
    report = reproduce(out, models=[model], data_dir=data_dir, tasks=TASKS, settings=QUICK, command="cftune x")
    assert base_json.stat().st_mtime_ns == base_written  # not recomputed

    data = json.loads((out / "report.json").read_text())
    entry = data["models"][model]
    base, tuned = entry["base"], entry["tuned"]
    assert set(base["scores"]) == {"STS12", "BIOSSES"} and entry["train"]["steps"] == 6
    assert base["prompt"] == tuned["prompt"] == 'This sentence : "{text}" means in one word:"'
    assert tuned["average"] != pytest.approx(base["average"], abs=1e-6)  # training changed the model

    rows = md_rows(report.read_text().split("\n## ")[0])  # the scores table
    assert rows[(model, "base")][-1] == f"**{base['average']:.2f}**"
    assert rows[(model, "fine-tuned")][-1] == f"**{tuned['average']:.2f}**"
    gain = tuned["average"] - base["average"]
    assert rows[(model, "gain")][-1] == f"{gain:+.2f}"
    assert rows[(model, "relative gain")][-1] == f"{100 * gain / abs(base['average']):+.1f}%"
    # published figures are 9-task averages: shown beside a 9-task report only
    assert ("*MiniCPM-2B fine-tuned (paper)*", "*published*") not in rows
    assert "An average over 2 of the 9 STS tasks: not comparable" in report.read_text()
    for result in (entry["base"], entry["tuned"]):
        result["scores"] = {task: result["average"] for task in STS_TASKS}
    nine_tasks = md_rows(reproduce_markdown(data))
    assert nine_tasks[("*MiniCPM-2B fine-tuned (paper)*", "*published*")][-1] == "*83.84*"
    sts_plot, training_plot = entry["plots"]
    assert_is_a_plot(out / sts_plot, (480, 1080)) and assert_is_a_plot(out / training_plot, (480, 840))
    for png in entry["plots"]:
        assert f"![{png}]({png})" in report.read_text()
    assert "cftune x" in report.read_text() and "compare with care" in report.read_text()
    assert (out / "runs" / ".gitignore").read_text() == "*\n"

    # the trained model's card says how it was made and, once scored, how it scored; an export keeps that
    card = (out / "runs" / "llama" / "README.md").read_text()
    assert "## How cftune made this model" in card and "| training | 6 steps of 8 triplets, lr 0.001" in card
    assert f"| **average** | | **{tuned['average']:.2f}** |" in card and card.count("cftune:start") == 1
    assert card.index("cftune:start") < card.index("## Model Details")  # under the title, above the rest
    exported = export(out / "runs" / "llama", tmp_path / "exported")
    assert model_card_section_of(exported) == model_card_section_of(out / "runs" / "llama")


def test_reproduce_refuses_to_reuse_a_run_made_with_other_settings(tiny_models, data_dir, tmp_path):
    model, out = str(tiny_models["llama"]), tmp_path / "report"
    reproduce(out, models=[model], data_dir=data_dir, tasks="BIOSSES", settings=QUICK)
    with pytest.raises(ConfigError, match="other settings"):
        reproduce(out, models=[model], data_dir=data_dir, tasks="BIOSSES", settings=[*QUICK, "lora.r=4"])
    (out / "runs" / "llama" / "train_summary.json").unlink()  # training "unfinished": it would resume
    with pytest.raises(ConfigError, match="other settings"):
        reproduce(out, models=[model], data_dir=data_dir, tasks="BIOSSES", settings=[*QUICK, "lora.r=4"])


def test_ablate_table_plots_and_skip_on_rerun(tiny_models, data_dir, tmp_path, monkeypatch, capsys):
    out = tmp_path / "ablation"
    argv = ["ablate", "--model", str(tiny_models["qwen2"]), "--grid", "lr=1e-2,1e-4", "--grid",
            "hard_negatives=on,off", "--steps", "3", "--data-dir", data_dir, "--tasks", TASKS,
            "--set", "batch_size=8", "--set", "precision=float32", "--out", str(out)]
    assert main(argv) == 0
    data = json.loads((out / "ablation.json").read_text())
    points = [r["point"] for r in data["results"]]
    assert points == [{"learning_rate": lr, "hard_negatives": hn} for lr in ("1e-2", "1e-4") for hn in ("on", "off")]
    for row in data["results"]:
        name = ",".join(f"{k}={v}" for k, v in row["point"].items())
        point = json.loads((out / "points" / f"{experiments.slug(name)}.json").read_text())
        assert row["average"] == pytest.approx(point["average"])
    # a 100x larger learning rate moves the model further from where it started: LoRA's B matrices start at
    # zero, so their norm is the distance travelled
    def travelled(point: str) -> float:
        weights = load_file(out / "runs" / experiments.slug(point) / "adapter_model.safetensors")
        return sum(float(w.norm()) for name, w in weights.items() if "lora_B" in name)

    for hn in ("on", "off"):
        assert travelled(f"learning_rate=1e-2,hard_negatives={hn}") > \
            10 * travelled(f"learning_rate=1e-4,hard_negatives={hn}") > 0
    averages = [r["average"] for r in data["results"]]
    # the untrained model is scored once, as the reference row, with the recipe's prompt
    [untrained] = data["untrained"]
    reference = json.loads((out / "points" / f"untrained_prompt={untrained['prompt']}.json").read_text())
    assert untrained["average"] == pytest.approx(reference["average"])
    assert all(abs(a - untrained["average"]) > 1e-6 for a in averages[:2])  # lr 1e-2 changed the model
    table = (out / "ablation.md").read_text()
    assert len(re.findall(r"^\| 1e-(2|4) \| (on|off) \|", table, flags=re.M)) == 4
    for png in ("ablation-learning_rate.png", "ablation-hard_negatives.png"):
        assert_is_a_plot(out / png, (480, 720)) and f"]({png})" in table

    forbid(monkeypatch, "cftune.training.train", "cftune.experiments.evaluate_sts")
    assert main(argv) == 0  # everything done: only the report is rebuilt
    assert json.loads((out / "ablation.json").read_text())["results"] == data["results"]


def test_grid_and_recipe_errors_are_clear():
    assert parse_grid(["lr=1e-5, 5e-5", "prompt=none,eol"]) == {"learning_rate": ["1e-5", "5e-5"],
                                                                 "prompt": ["none", "eol"]}
    with pytest.raises(ConfigError, match="factor=level"):
        parse_grid(["lr"])
    with pytest.raises(ConfigError, match="unknown setting 'batchsize'"):
        experiments.ablation_configs("cpu-gemma3-270m", [], {"batchsize": ["8"]})
    # a library caller is told the argument's name; the command line says the flag (test_nothing_lost)
    with pytest.raises(ConfigError, match="experiment: unknown experiment 'tpu-huge'; known: cpu-quick, cpu-small"):
        reproduce("unused", experiment="tpu-huge")


def test_quick_experiment_scores_its_own_tasks_and_says_it_is_quick(tiny_models, data_dir, tmp_path, caplog):
    sts = tmp_path / "sts"
    for task in ("STSBenchmark", "STS17"):  # the quick experiment's other two tasks, as small files
        (sts / f"{task}.jsonl").write_text((sts / "BIOSSES.jsonl").read_text())
    model, out = str(tiny_models["llama"]), tmp_path / "report"
    caplog.set_level(logging.INFO)
    reproduce(out, experiment="cpu-quick", models=[model], data_dir=data_dir, settings=QUICK)

    report = json.loads((out / "report.json").read_text())
    entry = report["models"][model]
    assert set(entry["tuned"]["scores"]) == {"STSBenchmark", "STS17", "BIOSSES"}
    assert entry["config"]["batch_size"] == 8 and entry["config"]["lora"]["target_modules"] == "all-linear"
    assert "(the quick version: a short training, 3 of the 9 STS tasks)" in (out / "report.md").read_text()
    # the training stage says how long it will take, measured on its first steps
    assert re.search(r"step 2/6: [0-9.]+ s per step, about [0-9.]+ (s|min) to go", caplog.text)


def test_ablate_scores_the_untrained_model_the_grid_starts_from(tiny_models, data_dir, tmp_path):
    """A grid over the design (here: layers) still has the recipe's untrained model as its reference."""
    from cftune import evaluate_sts, load_embedder

    model, out = str(tiny_models["gemma3_text"]), tmp_path / "ablation"
    assert main(["ablate", "--model", model, "--grid", "layers=1", "--steps", "2", "--data-dir", data_dir,
                 "--tasks", TASKS, "--set", "batch_size=8", "--set", "precision=float32", "--out", str(out)]) == 0
    [untrained] = json.loads((out / "ablation.json").read_text())["untrained"]
    # scored as ablate scores it (an inference load, precision auto)
    whole = evaluate_sts(prepare_for_inference(load_embedder(model, EmbedderDesign(prompt="eol")), precision="auto"),
                         TASKS,
                         data_dir=data_dir, show_progress_bar=False)
    one_layer = evaluate_sts(prepare_for_inference(load_embedder(model, EmbedderDesign(prompt="eol", layers=1)),
                                                   precision="auto"), TASKS,
                             data_dir=data_dir, show_progress_bar=False)
    assert untrained["average"] == pytest.approx(whole.average, abs=1e-4)
    assert abs(whole.average - one_layer.average) > 1e-3  # the check could tell the two apart


def test_reproduce_scores_search_before_and_after_when_given_a_search_set(tiny_models, data_dir, tmp_path,
                                                                          monkeypatch):
    model, out = str(tiny_models["llama"]), tmp_path / "report"
    search = write_retrieval_set(tmp_path / "search", {f"q{i}": f"d{i}" for i in range(6)})
    reproduce(out, models=[model], data_dir=data_dir, tasks="BIOSSES", settings=QUICK, retrieval=str(search))
    tuned = json.loads((out / "llama" / "tuned.retrieval.json").read_text())
    base = json.loads((out / "llama" / "base.retrieval.json").read_text())
    assert (tuned["queries"], tuned["documents"]) == (6, 7)
    rows = md_rows((out / "report.md").read_text().split("## Search on")[1].split("\n## ")[0])
    assert rows[(model, "fine-tuned")][-3:] == [f"{v:.2f}" for v in tuned["scores"].values()]
    assert rows[(model, "base")][-3:] == [f"{v:.2f}" for v in base["scores"].values()]
    assert json.loads((out / "report.json").read_text())["models"][model]["retrieval"]["tuned"] == tuned

    forbid(monkeypatch, "cftune.experiments.evaluate_retrieval", "cftune.training.train")
    reproduce(out, models=[model], data_dir=data_dir, tasks="BIOSSES", settings=QUICK, retrieval=str(search))


def test_ablate_scores_search_at_every_point_when_given_a_search_set(tiny_models, data_dir, tmp_path):
    from cftune import load_embedder
    from cftune.evaluation import evaluate_retrieval

    model, out = str(tiny_models["gemma3_text"]), tmp_path / "ablation"
    search = write_retrieval_set(tmp_path / "search", {f"q{i}": f"d{i}" for i in range(6)})
    assert main(["ablate", "--model", model, "--grid", "lr=1e-2,1e-4", "--steps", "2", "--data-dir", data_dir,
                 "--tasks", TASKS, "--set", "batch_size=8", "--set", "precision=float32", "--retrieval",
                 str(search), "--out", str(out)]) == 0
    rows = json.loads((out / "ablation.json").read_text())["results"]
    for row in rows:  # each point's search score is its own model's, as eval --retrieval scores it
        run = out / "runs" / experiments.slug(f"learning_rate={row['point']['learning_rate']}")
        alone = evaluate_retrieval(prepare_for_inference(load_embedder(str(run)), precision="auto"), str(search),
                                   show_progress_bar=False)
        assert row["retrieval"]["nDCG@10"] == pytest.approx(alone.scores["nDCG@10"], abs=1e-6)
    table = (out / "ablation.md").read_text()
    assert "| search nDCG@10 | train min |" in table.splitlines()[next(
        i for i, line in enumerate(table.splitlines()) if line.startswith("| learning_rate"))]
    assert f"| {rows[0]['retrieval']['nDCG@10']:.2f} |" in table


def test_ablate_levels_with_a_dot_are_each_scored_once(tiny_models, data_dir, tmp_path, monkeypatch):
    """A level's result file keeps the dot ("hardness=0.5.json" beside "hardness=0.json"): the 0.5 point is
    scored, not taken for the 0 point's, and a re-run finds both done (issue 23's ablate bug)."""
    out = tmp_path / "ablation"
    argv = ["ablate", "--model", str(tiny_models["qwen2"]), "--grid", "hardness=0,0.5", "--steps", "2",
            "--data-dir", data_dir, "--tasks", TASKS, "--set", "batch_size=8", "--set", "precision=float32",
            "--set", "learning_rate=1e-2", "--out", str(out)]
    assert main(argv) == 0
    results = json.loads((out / "ablation.json").read_text())["results"]
    assert [row["point"] for row in results] == [{"hardness": "0"}, {"hardness": "0.5"}]
    assert sorted(p.name for p in (out / "points").glob("hardness=*.json")) == ["hardness=0.5.json",
                                                                                 "hardness=0.json"]
    assert results[0]["average"] != pytest.approx(results[1]["average"], abs=1e-6)  # two models, two scores
    forbid(monkeypatch, "cftune.training.train", "cftune.experiments.evaluate_sts")
    assert main(argv) == 0  # both points found done
    assert json.loads((out / "ablation.json").read_text())["results"] == results


def test_distill_experiment_puts_the_student_beside_its_teacher_and_the_run_without_it(tiny_models, teacher_folder,
                                                                                     data_dir, tmp_path, monkeypatch):
    """reproduce --experiment distill: the teacher scored with its prompt, the student as downloaded, trained by
    the paper's method (the recipe without its teacher) and distilled; the recipe's teacher alias is found
    offline in the cache's models/ folder; sizes and speeds in a second table."""
    monkeypatch.setenv("CFTUNE_CACHE", str(tmp_path / "cache"))
    (tmp_path / "cache" / "models").mkdir(parents=True)
    (tmp_path / "cache" / "models" / "embeddinggemma-300m").symlink_to(teacher_folder)
    student, out = str(tiny_models["bert"]), tmp_path / "report"
    settings = ["max_steps=6", "warmup_steps=1", "batch_size=8", "save_steps=6", "logging_steps=1",
                "learning_rate=1e-3", "precision=float32", "distill_loss=cosine"]  # a map: the sizes change
    report = reproduce(out, experiment="distill", models=[student], data_dir=data_dir, tasks=TASKS,
                       settings=settings)

    data = json.loads((out / "report.json").read_text())
    teacher, entry = data["teachers"]["embeddinggemma-300m"], data["models"][student]
    reference = entry["reference"]
    assert teacher["prompt"] == "similar: " and teacher["dimension"] == 24
    assert reference["label"] == "paper method (no teacher)" and "teacher" not in reference["train"]
    assert entry["train"]["teacher"] == "embeddinggemma-300m" and entry["train"]["projection"] is True
    assert entry["base"]["dimension"] == reference["result"]["dimension"] == 32 and entry["tuned"]["dimension"] == 24

    text = report.read_text()
    scores = md_rows(text.split("\n## ")[0])
    assert scores[("embeddinggemma-300m", "teacher")][-1] == f"**{teacher['average']:.2f}**"
    for label, result in [("base", entry["base"]), ("paper method (no teacher)", reference["result"]),
                          ("distilled", entry["tuned"])]:
        assert scores[(student, label)][-1] == f"**{result['average']:.2f}**"
    sizes = md_rows(text.split("## Vector size and speed")[1].split("\n## ")[0])
    assert sizes[(student, "distilled")][0] == "24" and sizes[(student, "base")][0] == "32"
    assert sizes[(student, "distilled")][2] == f"{entry['train']['train_seconds'] / 60:.1f}"
    texts = len({t for row in TRIPLETS for t in row})  # a fresh cache: the teacher embedded every text
    assert sizes[(student, "distilled")][3] == f"{entry['train']['teacher_seconds']:.1f} ({texts} of {texts} texts new)"
    assert "- teacher embeddinggemma-300m (prompt STS): 1 x InfoNCE + 1 x cosine distillation" in text

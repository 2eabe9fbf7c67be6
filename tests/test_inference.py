"""Inference loads are for speed: bf16 only where it is native, LoRA merged in memory, int8 on request."""

import platform

import numpy as np
import pytest
import torch

from cftune import encode, load_embedder
from cftune.cli import main
from cftune.config import load_config
from cftune.design import EmbedderDesign, lm_body
from cftune.encoding import resolve_precision
from cftune.errors import ConfigError
from cftune.evaluation import evaluate_sts
from cftune.int8 import Int8Linear, fused_steps, quantize_rows
from cftune.io import cpu_has_native_bf16, machine
from cftune.models import prepare_for_inference
from cftune.training import add_lora
from conftest import CORPUS

TEXTS = ["Hi.", CORPUS[1], CORPUS[4], "A cat sleeps."]

# (avx512_bf16, amx_tile, oneDNN says bf16 runs) for the CPU classes our machines have
CPU_CLASSES = {
    "Sapphire Rapids (AVX512-BF16 and AMX)": ((True, True, True), "bfloat16"),
    "Cooper Lake (AVX512-BF16, no AMX)": ((True, False, True), "bfloat16"),
    "Xeon with AVX-512 but no BF16 (oneDNN emulates it)": ((False, False, True), "float32"),
    "AMD EPYC / AVX2 only": ((False, False, False), "float32"),
}


@pytest.mark.parametrize("cpu", list(CPU_CLASSES))
def test_auto_picks_bf16_only_where_the_cpu_has_it_natively(monkeypatch, cpu):
    (avx512_bf16, amx, onednn), expected = CPU_CLASSES[cpu]
    monkeypatch.setattr(platform, "machine", lambda: "x86_64")
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx)
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: onednn)
    assert resolve_precision("auto", "cpu") == expected
    assert cpu_has_native_bf16() == (expected == "bfloat16")
    assert ("no native bf16" in machine()) == (expected == "float32")
    assert resolve_precision("float32", "cpu") == "float32"  # an explicit choice is kept
    assert resolve_precision("bfloat16", "cpu") == "bfloat16"


@pytest.mark.parametrize(("isa", "expected"), [("AVX512_CORE_VNNI", "float32"), ("avx2", "float32"),
                                             ("AVX512_CORE_AMX", "bfloat16"), ("ALL", "bfloat16")])
def test_auto_follows_a_onednn_isa_limit(monkeypatch, isa, expected):
    """ONEDNN_MAX_CPU_ISA below AVX512_CORE_BF16 makes oneDNN emulate bf16 even on a CPU that has it."""
    monkeypatch.setattr(platform, "machine", lambda: "x86_64")
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: True)
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", isa)
    assert resolve_precision("auto", "cpu") == expected


def tuned_folder(tiny_models, tmp_path, arch="llama"):
    """A saved embedder with a LoRA on all linear layers that does something (B != 0)."""
    embedder = load_embedder(str(tiny_models[arch]), EmbedderDesign(prompt="eol"))
    add_lora(embedder, load_config(overrides={"lora.dropout": 0.0, "lora.target_modules": "all-linear"}))
    torch.manual_seed(3)
    with torch.no_grad():
        for name, parameter in embedder.named_parameters():
            if "lora_B" in name:
                parameter.normal_(0, 0.3)
    embedder.save(str(tmp_path / "tuned"))
    return tmp_path / "tuned"


@pytest.mark.parametrize("arch", ["llama", "gemma3_text", "qwen3"])
def test_inference_load_merges_the_lora_and_embeds_the_same(tiny_models, tmp_path, arch):
    folder = tuned_folder(tiny_models, tmp_path, arch)
    unmerged = load_embedder(str(folder))
    merged = prepare_for_inference(load_embedder(str(folder)))
    assert any("lora_" in name for name, _ in unmerged.named_parameters())
    assert not any("lora_" in name for name, _ in merged.named_parameters())
    base = encode(load_embedder(str(tiny_models[arch]), EmbedderDesign(prompt="eol")), TEXTS,
                  precision="float32").numpy()
    want = encode(unmerged, TEXTS, precision="float32").numpy()
    assert np.abs(want - base).max() > 1e-3, "the adapter must change the vectors for this test to mean anything"
    np.testing.assert_allclose(encode(merged, TEXTS, precision="float32").numpy(), want, atol=1e-5, rtol=0)
    assert (folder / "adapter_model.safetensors").is_file() and not (folder / "model.safetensors").exists()


def test_a_bf16_inference_load_casts_the_weights_once_and_says_so(tiny_models, tmp_path, sts_dir):
    folder = tuned_folder(tiny_models, tmp_path, "gemma3_text")
    fp32 = prepare_for_inference(load_embedder(str(folder)), precision="float32")
    bf16 = prepare_for_inference(load_embedder(str(folder)), precision="bfloat16")
    assert {p.dtype for p in fp32.parameters()} == {torch.float32}
    assert {p.dtype for p in bf16.parameters()} == {torch.bfloat16}  # merged first, then cast: no LoRA left
    want = encode(fp32, TEXTS, precision="float32")
    got = encode(bf16, TEXTS, precision="float32")  # the weights decide: asking fp32 cannot undo the cast
    assert got.dtype == torch.float32
    cosine = torch.nn.functional.cosine_similarity(got, want)
    assert cosine.min() > 0.99 and (got - want).abs().max() > 0  # bf16 rounding, not the same numbers
    assert evaluate_sts(bf16, "STS12", data_dir=str(sts_dir), precision="float32").precision == "bfloat16"
    assert evaluate_sts(fp32, "STS12", data_dir=str(sts_dir), precision="float32").precision == "float32"
    # a training load is never cast, whatever precision it is later used in
    assert {p.dtype for p in load_embedder(str(folder)).parameters()} == {torch.float32}


def test_an_int8_inference_load_quantizes_every_linear_layer_and_stays_close(tiny_models, tmp_path, sts_dir):
    folder = tuned_folder(tiny_models, tmp_path, "gemma3_text")
    fp32 = prepare_for_inference(load_embedder(str(folder)), precision="float32")
    int8 = prepare_for_inference(load_embedder(str(folder)), precision="auto", quantize="int8")
    assert not [m for m in lm_body(int8).modules() if isinstance(m, torch.nn.Linear)]
    assert len([m for m in lm_body(int8).modules() if isinstance(m, Int8Linear)]) == 2 * 7  # 2 layers x 7
    assert all(p.dtype == torch.float32 for p in lm_body(fp32).parameters())
    want, got = encode(fp32, TEXTS), encode(int8, TEXTS)
    assert got.dtype == torch.float32
    cosine = torch.nn.functional.cosine_similarity(got, want)
    assert cosine.min() > 0.95 and (got - want).abs().max() > 1e-4  # rounded, and close
    # batched == alone: each token has its own activation scale, so a neighbour in the batch changes nothing
    alone = torch.cat([encode(int8, [text]) for text in TEXTS])
    torch.testing.assert_close(got, alone, atol=1e-5, rtol=0)
    assert evaluate_sts(int8, "STS12", data_dir=str(sts_dir)).precision == "int8"
    # the server encodes on a worker thread, where the compiled kernels run as well
    from fastapi.testclient import TestClient

    from cftune.serving import ServeSettings, create_app

    with TestClient(create_app(int8, "tiny", ServeSettings(precision="float32", normalize=False))) as client:
        data = client.post("/v1/embeddings", json={"input": TEXTS}).json()["data"]
    torch.testing.assert_close(torch.tensor([d["embedding"] for d in data]), got, atol=1e-5, rtol=0)


@pytest.mark.parametrize("fused", [True, False])
def test_an_int8_layer_is_the_exact_product_of_its_int8_numbers(fused):
    """int8 x int8 sums are exact in int32, so the layer equals float64 arithmetic on the dequantized numbers."""
    torch.manual_seed(0)
    linear = torch.nn.Linear(64, 48)
    x = torch.randn(3, 5, 64) * torch.linspace(0.1, 20, 64)  # outlier channels, as Gemma 3 has
    layer = Int8Linear(linear, *(fused_steps() if fused else ()))
    q_x, s_x = quantize_rows(x.reshape(-1, 64))
    assert q_x.dtype == torch.int8 and q_x.abs().max() == 127  # each token's largest value maps to 127
    q_w, s_w = quantize_rows(linear.weight.detach())
    exact = (q_x.double() * s_x.double()) @ (q_w.double() * s_w.double()).T + linear.bias.detach().double()
    got = layer(x)
    assert got.shape == (3, 5, 48) and got.dtype == torch.float32
    torch.testing.assert_close(got.reshape(-1, 48).double(), exact, atol=1e-4, rtol=1e-5)
    error = (got - linear(x)).abs().max() / linear(x).abs().max()
    assert 0 < error < 0.02  # and close to the float layer


def test_int8_runs_eagerly_where_torch_compile_cannot(tiny_models, monkeypatch, caplog):
    compiled = encode(prepare_for_inference(load_embedder(str(tiny_models["gemma3_text"])), quantize="int8"), TEXTS)

    def no_compiler(function, **kwargs):
        def fails(*args):
            raise RuntimeError("InductorError: no C++ compiler found")
        return fails

    monkeypatch.setattr(torch, "compile", no_compiler)
    with caplog.at_level("WARNING", logger="cftune.int8"):
        eager = prepare_for_inference(load_embedder(str(tiny_models["gemma3_text"])), quantize="int8")
    assert "torch.compile cannot run here (InductorError: no C++ compiler found); running eagerly" in caplog.text
    torch.testing.assert_close(encode(eager, TEXTS), compiled, atol=1e-4, rtol=0)


def test_quantize_is_refused_for_unknown_names_and_other_devices_before_a_model_loads(tiny_models, capsys):
    from cftune.config import check_quantization

    with pytest.raises(ConfigError, match="^quantize: must be one of int8, got 'int4'$"):
        prepare_for_inference(load_embedder(str(tiny_models["llama"])), quantize="int4")
    with pytest.raises(ConfigError, match="^quantize: int8 is for CPUs; on cuda use precision auto"):
        check_quantization("int8", "cuda")
    assert main(["similarity", "--model", "no-such-model-is-loaded", "--quantize", "int8", "--device", "cuda",
                 "a", "b"]) == 2  # the command line says so before it looks for the model
    assert "--quantize: int8 is for CPUs; on cuda" in capsys.readouterr().err


def test_the_quantize_flag_reaches_the_model_a_command_loads(tiny_models, tmp_path, capsys):
    folder = str(tuned_folder(tiny_models, tmp_path, "gemma3_text"))
    a, b = "A man plays a guitar.", CORPUS[1]
    assert main(["similarity", "--model", folder, "--quantize", "int8", a, b]) == 0
    int8 = encode(prepare_for_inference(load_embedder(folder), quantize="int8"), [a, b])
    assert float(capsys.readouterr().out) == pytest.approx(float(torch.cosine_similarity(*int8[:, None])), abs=1e-4)
    with pytest.raises(SystemExit):  # argparse names the choices
        main(["similarity", "--model", folder, "--quantize", "int4", a, b])
    assert "invalid choice: 'int4' (choose from 'int8')" in capsys.readouterr().err

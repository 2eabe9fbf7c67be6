"""Inference loads are for speed: bf16 only where it is native, LoRA merged in memory."""

import platform

import numpy as np
import pytest
import torch

from cftune import encode, load_embedder
from cftune.config import load_config
from cftune.io import cpu_has_native_bf16, machine
from cftune.models import resolve_precision
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


def tuned_folder(tiny_models, tmp_path, arch="llama"):
    """A saved embedder with a LoRA on all linear layers that does something (B != 0)."""
    embedder = load_embedder(str(tiny_models[arch]), prompt="eol")
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
    merged = load_embedder(str(folder), inference=True)
    assert any("lora_" in name for name, _ in unmerged.named_parameters())
    assert not any("lora_" in name for name, _ in merged.named_parameters())
    base = encode(load_embedder(str(tiny_models[arch]), prompt="eol"), TEXTS, precision="float32").numpy()
    want = encode(unmerged, TEXTS, precision="float32").numpy()
    assert np.abs(want - base).max() > 1e-3, "the adapter must change the vectors for this test to mean anything"
    np.testing.assert_allclose(encode(merged, TEXTS, precision="float32").numpy(), want, atol=1e-5, rtol=0)
    assert (folder / "adapter_model.safetensors").is_file() and not (folder / "model.safetensors").exists()

"""int8 inference on CPU: every linear layer of the transformer as int8 x int8 -> int32 matrix products.

Weights are int8 with one scale per output channel, set once. Activations are int8 with one scale per token,
computed as each batch runs: Gemma 3's activations have outlier channels, and one scale for a whole batch
(torch's ``quantize_dynamic``) rounds the other channels away (-1.8 points on STS-B dev, against -0.3 per
token). The product runs on ``torch._int_mm`` (oneDNN's VNNI/AMX int8 kernels).

Why our own layer, not torchao's ``Int8DynamicActivationInt8WeightConfig`` (the same scheme, vectors within
a cosine of 0.98 of each other): in eager mode the work around the product (finding the scales, rounding,
rescaling the int32 result) took half of torchao's encode time and the product only a fifth. Here the two
steps around the product are each one ``torch.compile``d kernel, and each transformer layer is compiled as
a whole (speed against fp32, bf16 and torchao's int8: ``benchmarks/sts_speed.py``, results/inference-speed/).
Compiling costs seconds on the first batches (``cftune serve`` pays them at start-up); where it cannot run
(no C++ compiler), everything runs eagerly: slower, the same vectors to 1e-4.
"""

from __future__ import annotations

import logging

import torch

log = logging.getLogger(__name__)

INT8_MAX = 127


def quantize_rows(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric int8 with one scale per row: x ~= q * scale."""
    scale = x.abs().amax(-1, keepdim=True).float().clamp(min=1e-6) / INT8_MAX
    return torch.round(x / scale).clamp(-INT8_MAX, INT8_MAX).to(torch.int8), scale


def rescale(product: torch.Tensor, row_scale: torch.Tensor, column_scale: torch.Tensor,
            bias: torch.Tensor | None) -> torch.Tensor:
    """The int32 product of two int8 matrices back to float: one scale per token times one per channel."""
    out = product.float() * row_scale * column_scale
    return out if bias is None else out + bias


class Int8Linear(torch.nn.Module):
    """A ``torch.nn.Linear`` for inference in int8 (weights per output channel, activations per token).

    ``quantize`` and ``rescale``: the steps around the product (``quantize_rows`` and ``rescale``, or
    compiled versions of them)."""

    weight_t: torch.Tensor  # buffers, declared for the type checker
    column_scale: torch.Tensor
    bias: torch.Tensor | None

    def __init__(self, linear: torch.nn.Linear, quantize=quantize_rows, rescale=rescale):
        super().__init__()
        quantized, scale = quantize_rows(linear.weight.detach().float())  # a weight row is an output channel
        self.register_buffer("weight_t", quantized.t().contiguous())  # (in, out): _int_mm's layout
        self.register_buffer("column_scale", scale.t().contiguous())
        self.register_buffer("bias", None if linear.bias is None else linear.bias.detach().float())
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.quantize, self.rescale = quantize, rescale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        quantized, row_scale = self.quantize(x.reshape(-1, self.in_features))
        product = torch._int_mm(quantized, self.weight_t)
        out = self.rescale(product, row_scale, self.column_scale, self.bias)
        return out.reshape(*x.shape[:-1], self.out_features).to(x.dtype)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, int8"


def fused_steps() -> tuple | None:
    """``quantize_rows`` and ``rescale`` compiled for every shape, or None where compiling fails here."""
    try:
        quantize = torch.compile(quantize_rows, dynamic=True)
        quantize(torch.randn(4, 8))  # compiles now: a missing C++ compiler fails here, not inside an encode
    except Exception as error:  # noqa: BLE001 - whatever the backend's failure, the answer is to run eagerly
        log.warning("int8: torch.compile cannot run here (%s); running eagerly, slower", str(error)[:200])
        return None
    return quantize, torch.compile(rescale, dynamic=True)


def quantize_linear_layers(body: torch.nn.Module) -> int:
    """Swap every ``torch.nn.Linear`` inside ``body`` for an ``Int8Linear``; returns how many. Where compiling
    works, the steps around each product are compiled, and so is each transformer layer as a whole (every
    architecture in transformers names them ``*DecoderLayer``): its norms, attention and activations fuse
    with the int8 steps (against compiling only the norms and MLPs: results/inference-speed/int8-options.md)."""
    steps = fused_steps()
    swapped = 0
    for module in list(body.modules()):
        for name, child in list(module.named_children()):
            if type(child) is torch.nn.Linear:
                setattr(module, name, Int8Linear(child, *(steps or ())))
                swapped += 1
    if steps:
        for module in body.modules():
            if type(module).__name__.endswith("DecoderLayer"):
                module.compile(dynamic=True)
    return swapped

"""InfoNCE as sentence-transformers computes it, with each column embedded in length buckets.

sentence-transformers embeds a training column as one padded batch, so every text is computed at the width of
the longest one in the batch (and its ``embed_columns`` merges the candidate columns into one batch, padded to
the longest of them all). On a CPU the arithmetic is the step's time, and a padded position costs as much as a
real one. ``embed_in_length_buckets`` sorts a column's rows by length, splits them into a few buckets and cuts
each bucket to its own longest row: the same texts, the same vectors (to rounding), the same loss, less
arithmetic. Padding is on the right (decoders here pad right, encoders do too), so a bucket's cut only removes
pad positions and no token moves. On a GPU padding is cheap and each extra forward pass is not, so ``auto`` keeps
one bucket there. Measured: results/train-profile/README.md.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from sentence_transformers import SentenceTransformer
from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss
from torch import Tensor

CPU_BUCKETS = 4  # what length_buckets auto means on a CPU (1 elsewhere)


def resolve_buckets(length_buckets: int | None, device: torch.device) -> int:
    """The ``length_buckets`` setting for this device: None (auto) is CPU_BUCKETS on a CPU, 1 elsewhere."""
    if length_buckets is not None:
        return length_buckets
    return CPU_BUCKETS if device.type == "cpu" else 1


def embed_in_length_buckets(model: SentenceTransformer, features: dict, buckets: int) -> Tensor:
    """``model(features)["sentence_embedding"]``, computed in ``buckets`` forward passes over rows of similar
    length, each cut to its own longest row; the vectors come back in the rows' order.

    One pass where there is nothing to gain or the cut could change a result: a single bucket, fewer rows
    than two a bucket, or inputs that leave a prompt out of the pooling (``prompt_length`` counts positions
    from the left)."""
    mask = features.get("attention_mask")
    if buckets <= 1 or not isinstance(mask, Tensor) or mask.ndim != 2 or len(mask) < 2 * buckets \
            or "prompt_length" in features:
        return model(features)["sentence_embedding"]
    rows, width = mask.shape
    order = torch.argsort(mask.sum(dim=1), descending=True, stable=True)
    parts = []
    for chosen in order.tensor_split(buckets):
        used = mask[chosen].any(dim=0)  # right padding: a prefix of the positions
        part = {}
        for key, value in features.items():
            if isinstance(value, Tensor) and value.ndim >= 1 and value.shape[0] == rows:
                value = value[chosen]
                if value.ndim >= 2 and value.shape[1] == width:
                    value = value[:, used]
            part[key] = value
        parts.append(model(part)["sentence_embedding"])
    return torch.cat(parts)[torch.argsort(order)]


def embed_columns(model: SentenceTransformer, features: Iterable[dict], buckets: int) -> list[Tensor]:
    """Each column's vectors (``embed_in_length_buckets``); with one bucket, sentence-transformers' own
    ``embed_columns`` (the candidate columns merged into one forward pass, as it does by default)."""
    if buckets <= 1:
        from sentence_transformers.base.losses.merged_forward import embed_columns as merged_columns

        return merged_columns(model, features)
    return [embed_in_length_buckets(model, column, buckets) for column in features]


class BucketedMultipleNegativesRankingLoss(MultipleNegativesRankingLoss):
    """sentence-transformers' MultipleNegativesRankingLoss (InfoNCE over in-batch and hard negatives; van den
    Oord et al. 2018, arXiv 1807.03748), its columns embedded in ``length_buckets`` buckets by length."""

    def __init__(self, model: SentenceTransformer, *, length_buckets: int, **kwargs):
        super().__init__(model, **kwargs)
        self.length_buckets = length_buckets

    def forward(self, sentence_features: Iterable[dict[str, Tensor]], labels: Tensor) -> Tensor:
        return self.compute_loss_from_embeddings(embed_columns(self.model, sentence_features, self.length_buckets),
                                                 labels)

    def get_config_dict(self) -> dict:
        return {**super().get_config_dict(), "length_buckets": self.length_buckets}

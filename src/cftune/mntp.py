"""Masked next-token prediction (LLM2Vec, BehnamGhader et al. 2024, arXiv 2404.05961): a warm-up that teaches a
causal LM to use bidirectional attention before contrastive training (``TrainConfig.mntp_steps``)."""

from __future__ import annotations

import logging
import typing

import torch

from cftune.config import TrainConfig
from cftune.design import lm_body, lm_module
from cftune.encoding import autocast, resolve_precision

log = logging.getLogger(__name__)


def output_embeddings(model) -> torch.Tensor:
    """The LM head's weight (vocabulary x hidden), frozen: tied to the token embeddings in the models cftune
    ships (Gemma 3, SmolLM2), else read once from the model's own causal-LM checkpoint."""
    body = lm_body(model)
    if getattr(body.config, "tie_word_embeddings", False):
        embeddings = typing.cast(torch.nn.Embedding, body.get_input_embeddings())
        return embeddings.weight.detach()
    from transformers import AutoModelForCausalLM

    head = AutoModelForCausalLM.from_pretrained(str(body.name_or_path), dtype=torch.float32).get_output_embeddings()
    return head.weight.detach().to(body.device)


def mntp_loss(model, head: torch.Tensor, texts: list[str], mask_fraction: float,
              generator: torch.Generator) -> torch.Tensor:
    """Masked next-token prediction (LLM2Vec, BehnamGhader et al. 2024, arXiv 2404.05961): mask a fraction of
    the tokens and predict each masked token from the state one position before it, as a causal LM predicts
    the next token. With bidirectional attention that state also sees the text after the mask."""
    tokenizer = lm_module(model).tokenizer
    assert tokenizer is not None
    batch = tokenizer(texts, padding=True, truncation=True, max_length=model.max_seq_length, return_tensors="pt")
    ids, attention = batch["input_ids"], batch["attention_mask"]
    maskable = attention.bool().clone()
    maskable[:, 0] = False  # the first token (BOS) has no state before it
    for special in tokenizer.all_special_ids:
        maskable &= ids != special
    chosen = maskable & (torch.rand(ids.shape, generator=generator) < mask_fraction)
    mask_id = tokenizer.mask_token_id if tokenizer.mask_token_id is not None else tokenizer.pad_token_id
    masked = torch.where(chosen, torch.full_like(ids, mask_id), ids)
    body = lm_body(model)
    states = body(input_ids=masked.to(body.device), attention_mask=attention.to(body.device)).last_hidden_state
    before = chosen[:, 1:]  # state at position i - 1 predicts the masked token at i
    logits = states[:, :-1][before.to(states.device)].float() @ head.float().T
    return torch.nn.functional.cross_entropy(logits, ids[:, 1:][before].to(logits.device))


def mntp_warmup(model, texts: list[str], config: TrainConfig) -> list[float]:
    """``config.mntp_steps`` steps of masked next-token prediction on the training texts themselves, training
    what contrastive training will train (the LoRA adapter, or the body), before it starts. Returns the
    losses. Meant for bidirectional attention, which a causal LM has never seen (LLM2Vec's first stage)."""
    head = output_embeddings(model)
    parameters = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(parameters, lr=config.learning_rate, weight_decay=config.weight_decay)
    generator = torch.Generator().manual_seed(config.seed)
    precision = resolve_precision(config.precision, model.device)
    losses = []
    model.train()
    for step in range(config.mntp_steps):
        picked = torch.randint(len(texts), (config.batch_size,), generator=generator).tolist()
        with autocast(precision, model.device):
            loss = mntp_loss(model, head, [texts[i] for i in picked], config.mntp_mask, generator)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(float(loss))
        if step == 0 or (step + 1) % max(1, config.mntp_steps // 4) == 0:
            log.info("MNTP warm-up step %d/%d: loss %.3f", step + 1, config.mntp_steps, losses[-1])
    return losses

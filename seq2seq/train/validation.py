"""What one update and one validation compute: the loss of a batch, the module that DDP wraps,
and dev loss, perplexity and BLEU."""

from __future__ import annotations

import dataclasses
import math

import torch
from torch import nn

from seq2seq.config import RunConfig
from seq2seq.data.batching import Batch, make_batch, plan_batches
from seq2seq.data.prepare import RunData
from seq2seq.evaluate import score_corpus
from seq2seq.models.seq2seq import Seq2Seq
from seq2seq.translate import translate_ids


def batch_loss(model: Seq2Seq, batch: Batch, pad: int, label_smoothing: float) -> tuple[torch.Tensor, int]:
    """Summed cross-entropy over the real target positions, and their count.

    Only unpadded positions are projected to the vocabulary (:meth:`Seq2Seq.cross_entropy`;
    with kernels, a chunk of rows at a time with the softmax and its gradient in float32)."""
    features = model(batch.src, batch.src_lengths, batch.tgt_in)
    real = batch.tgt_out != pad
    loss = model.cross_entropy(features[real], batch.tgt_out[real], label_smoothing)
    return loss, int(real.sum())


class BatchLoss(nn.Module):
    """:func:`batch_loss` as one module call, so that DistributedDataParallel wraps a forward
    that uses every parameter (the output projection included)."""

    def __init__(self, model: Seq2Seq, pad: int, label_smoothing: float) -> None:
        super().__init__()
        self.model, self.pad, self.label_smoothing = model, pad, label_smoothing

    def forward(self, batch: Batch) -> tuple[torch.Tensor, int]:
        return batch_loss(self.model, batch, self.pad, self.label_smoothing)


@torch.no_grad()
def validate(model: Seq2Seq, data: RunData, config: RunConfig, device: torch.device) -> dict[str, float]:
    """Dev loss and perplexity (teacher forced) and dev BLEU (greedy or beam search). The model
    is back in training mode afterwards, also when this is interrupted."""
    model.eval()
    try:
        dev_loss = _dev_loss(model, data, config, device)
        search = dataclasses.replace(config.search, beam_size=config.training.validation_beam_size, n_best=1)
        hyps = translate_ids(
            model, data.dev.src_ids, search, data.src_vocab, data.tgt_vocab, device, shortlist=data.shortlist
        )
    finally:
        model.train()
    texts = data.tgt_vocab.decode([h[0].tokens for h in hyps])
    bleu = score_corpus(texts, data.dev.references)["bleu"]
    return {"dev_loss": dev_loss, "dev_ppl": math.exp(min(dev_loss, 50.0)), "dev_bleu": bleu}


def _dev_loss(model: Seq2Seq, data: RunData, config: RunConfig, device: torch.device) -> float:
    """Teacher-forced cross-entropy per target token on the dev pairs."""
    pad = data.tgt_vocab.pad_id
    total, count = 0.0, 0
    pairs = data.dev.pairs
    plan = plan_batches(pairs.src_lengths, pairs.tgt_lengths, config.data.batch_tokens, config.data.batch_sentences)
    for indices in plan:
        batch = make_batch(pairs, indices, pad, data.tgt_vocab.bos_id, data.tgt_vocab.eos_id).to(device)
        loss, n = batch_loss(model, batch, pad, 0.0)
        total, count = total + float(loss.detach()), count + n
    return total / max(count, 1)

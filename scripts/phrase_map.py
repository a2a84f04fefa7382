#!/usr/bin/env python
"""Draw the phrase representations of a trained encoder in 2-D, as Cho et al. (2014),
Sec. 4.4 and Fig. 4–5, did: each phrase's summary vector c (the encoder's final hidden
state, both directions) is projected to two dimensions and plotted with its text.

    python scripts/phrase_map.py --checkpoint CKPT PHRASES OUT.png [--method pca|tsne]

PHRASES: source-language phrases, one per line (empty lines are skipped). ``pca`` (the
default) projects onto the two principal axes; ``tsne`` runs exact t-SNE (van der Maaten &
Hinton 2008; Cho et al. used Barnes-Hut t-SNE), fine for a few thousand phrases. Needs
matplotlib (``pip install -e '.[plot]'``).
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import torch
from torch import Tensor

from seq2seq.checkpoint import load_checkpoint
from seq2seq.data.batching import make_source_batch
from seq2seq.errors import Seq2SeqError


def summaries(checkpoint: str, phrases: list[str], batch_size: int = 256) -> Tensor:
    """(N, C): Cho et al.'s summary c of each phrase."""
    loaded = load_checkpoint(checkpoint)
    vocab, parts = loaded.src_vocab, []
    with torch.no_grad():
        for start in range(0, len(phrases), batch_size):
            ids = vocab.encode(phrases[start : start + batch_size])
            src, lengths = make_source_batch(ids, vocab.pad_id, vocab.eos_id)
            parts.append(loaded.model.encode(src, lengths).summary[:, 0])
    return torch.cat(parts)


def pca(x: Tensor) -> Tensor:
    """(N, C) -> (N, 2): coordinates on the two principal axes."""
    centered = x - x.mean(0)
    _, _, v = torch.linalg.svd(centered, full_matrices=False)
    return centered @ v[:2].T


def tsne(x: Tensor, perplexity: float = 30.0, steps: int = 750, seed: int = 0) -> Tensor:
    """(N, C) -> (N, 2): exact t-SNE with the optimisation of van der Maaten & Hinton (2008),
    Sec. 3.4: early exaggeration 4 for 50 steps, momentum 0.5 for 250 steps, then 0.8."""
    n = x.size(0)
    perplexity = min(perplexity, (n - 1) / 3)
    dist = torch.cdist(x, x).pow(2).fill_diagonal_(math.inf)  # exp(-inf) = 0: no self-pairs
    dist = dist - dist.min(1, keepdim=True).values  # a shift per row leaves p unchanged, avoids underflow
    beta, low, high = torch.ones(n), torch.zeros(n), torch.full((n,), math.inf)
    for _ in range(60):  # per row, the Gaussian precision whose entropy is log(perplexity)
        p = torch.exp(-dist * beta[:, None])
        p = p / p.sum(1, keepdim=True)
        entropy = -(p * p.clamp_min(1e-12).log()).sum(1)
        wider = entropy > math.log(perplexity)
        low, high = torch.where(wider, beta, low), torch.where(wider, high, beta)
        beta = torch.where(torch.isinf(high), beta * 2, (low + high) / 2)
    joint = ((p + p.T) / (2 * n)).clamp_min(1e-12)
    y = (torch.randn(n, 2, generator=torch.Generator().manual_seed(seed)) * 1e-2).requires_grad_()
    optimizer = torch.optim.SGD([y], lr=max(n / 16, 10.0), momentum=0.5)  # a step that suits small N too
    for step in range(steps):
        optimizer.param_groups[0]["momentum"] = 0.5 if step < 250 else 0.8
        q = 1.0 / (1.0 + torch.cdist(y, y).pow(2))
        q = (q.fill_diagonal_(0.0) / q.sum()).clamp_min(1e-12)
        target = joint * (4.0 if step < 50 else 1.0)
        loss = (target * (target.log() - q.log())).sum()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return y.detach()


def draw(points: Tensor, labels: list[str], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 7))
    ax.scatter(points[:, 0], points[:, 1], s=8, alpha=0.6)
    for (px, py), label in zip(points.tolist(), labels):
        ax.annotate(label, (px, py), fontsize=7, xytext=(2, 2), textcoords="offset points")
    ax.set_title(title)
    ax.set_xticks([])
    ax.set_yticks([])
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("phrases", help="one source phrase per line")
    parser.add_argument("output", help="the PNG to write")
    parser.add_argument("--method", default="pca", choices=["pca", "tsne"])
    parser.add_argument("--perplexity", type=float, default=30.0, help="tsne only")
    args = parser.parse_args(argv)
    try:
        return _map(args)
    except (Seq2SeqError, OSError) as e:  # a checkpoint or phrase file that cannot be used
        print(f"phrase_map.py: error: {e}", file=sys.stderr)
        return 2


def _map(args: argparse.Namespace) -> int:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        print("phrase_map.py needs matplotlib: pip install -e '.[plot]'", file=sys.stderr)
        return 2
    phrases = [line.strip() for line in Path(args.phrases).read_text(encoding="utf-8").splitlines() if line.strip()]
    if len(phrases) < 3:
        print(f"{args.phrases}: needs at least 3 phrases, has {len(phrases)}", file=sys.stderr)
        return 2
    torch.set_num_threads(1)
    vectors = summaries(args.checkpoint, phrases)
    points = pca(vectors) if args.method == "pca" else tsne(vectors, args.perplexity)
    draw(points, phrases, Path(args.output), f"{len(phrases)} phrases, encoder summary c, {args.method.upper()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

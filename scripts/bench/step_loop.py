#!/usr/bin/env python
"""The fused decoder's step loop (seq2seq.kernels.input_feeding), forward and backward, eager
against ``torch.compile`` (``training.compile``), on the reference model's sizes.

    python scripts/bench/step_loop.py [--precision bf16] [--mode default] [--rounds 5] [--threads 2]

Times forward + backward of ``input_feeding_gru`` over four batches shaped like the
reference model's (configs/benchmark.yaml: hidden, attention and output size 512; batch
and lengths like its 4,096-token batches), the two variants interleaved for ``--rounds``
rounds after the compilation, and prints each round, the medians and their ratio; and how
far each is from the float32 eager loop in the features and the gradients.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import Tensor

from seq2seq.kernels.input_feeding import EAGER, Steps, Weights, compiled_steps, input_feeding_gru

SIZE = 512  # hidden, attention, output and annotation size of the reference model
SHAPES = [(136, 22, 22), (95, 39, 39), (178, 23, 23), (230, 16, 17)]  # (N, T, S)


def _batch(n: int, t: int, s: int, gen: torch.Generator) -> tuple[list[Tensor], Weights, Tensor]:
    def p(*shape: int) -> Tensor:
        return (torch.randn(*shape, generator=gen) * 0.05).requires_grad_()

    h = SIZE
    weights = Weights(p(3 * h, h), p(3 * h, h), p(3 * h), p(2 * h, h), p(h), p(h, h))
    mask = torch.ones(n, s, dtype=torch.bool)
    mask[n // 2 :, s - 3 :] = False
    drop = (torch.rand(n, t, h, generator=gen) > 0.3).float() / 0.7
    inputs = [p(n, t, 3 * h), p(n, h), p(n, h), p(n, s, h), p(n, s, h), mask, drop]
    return inputs, weights, drop


def _run(steps: Steps, batch: tuple[list[Tensor], Weights, Tensor], bf16: bool) -> tuple[Tensor, list[Tensor]]:
    inputs, weights, drop = batch
    xe, h0, f0, keys2, memory, mask, _ = inputs
    leaves = [xe, h0, f0, keys2, memory, *weights]
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        features, h, _ = input_feeding_gru(xe, h0, f0, keys2, memory, mask, weights, drop, steps)
    grads = torch.autograd.grad(features.sum() + h.sum(), leaves)
    return features.detach(), list(grads)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--precision", choices=["fp32", "bf16"], default="bf16")
    parser.add_argument("--mode", choices=["default", "reduce-overhead"], default="default")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    gen = torch.Generator().manual_seed(0)
    batches = [_batch(n, t, s, gen) for n, t, s in SHAPES]
    bf16 = args.precision == "bf16"
    compiled = compiled_steps(args.mode)
    start = time.perf_counter()
    for _ in range(2):  # compile, including the recompilations of the first batches
        for batch in batches:
            _run(compiled, batch, bf16)
    print(f"torch {torch.__version__}, {args.threads} threads, {args.precision}, compile mode {args.mode}")
    print(f"compilation and two warm-up passes: {time.perf_counter() - start:.1f} s")
    for batch in batches:
        # The float32 eager loop as the reference: how far each variant is from it.
        ref_f, ref_g = _run(EAGER, batch, False)
        parts = []
        for name, steps in (("eager", EAGER), ("compiled", compiled)):
            f, g = _run(steps, batch, bf16)
            rel = max(float((a - b).abs().max() / a.abs().max()) for a, b in zip(ref_g, g, strict=True))
            parts.append(f"{name} {float((f - ref_f).abs().max()):.2e} / {rel:.2e}")
        shape = tuple(batch[0][0].shape[:2])
        print(f"batch {shape}, from float32 eager (features max |diff| / gradients max rel. diff):", "; ".join(parts))
    times: dict[str, list[float]] = {"eager": [], "compiled": []}
    for _ in range(args.rounds):
        for name, steps in (("eager", EAGER), ("compiled", compiled)):
            start = time.perf_counter()
            for batch in batches:
                _run(steps, batch, bf16)
            times[name].append(time.perf_counter() - start)
    for name, values in times.items():
        rounds = ", ".join(f"{v * 1000:.0f}" for v in values)
        print(f"{name:9s} ms per 4 batches: {rounds}; median {statistics.median(values) * 1000:.0f}")
    ratio = statistics.median(times["eager"]) / statistics.median(times["compiled"])
    print(f"eager / compiled: {ratio:.2f}")


if __name__ == "__main__":
    main()

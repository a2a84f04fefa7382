"""GFLOP/s of the reference model's matrix products: torch's operators against
:mod:`seq2seq.kernels.matmul` (oneDNN for float32 on CPU), in float32 and bfloat16.

    python scripts/bench/matmul_rates.py [--threads 2] [--calls 20] [--rows 200] [--packed]

One line per product: the median over ``--calls`` calls after 3 warm-up calls. ``--rows``
is the decoder's batch (sentences per step); the loss works on chunks of 512 rows and the
weight gradients on all N·T rows (taken as 20 steps).

``--packed`` instead times the search step's products (a decoder weight and the output
projection) with plain weights against weights packed once by
:func:`seq2seq.kernels.matmul.pack`, at 1 row, one sentence's beam of 5, 40 and 320 rows
(64 sentences' beams).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from functools import partial

import torch
from torch import Tensor

from seq2seq.kernels import matmul


def _median_ms(run: Callable[[], Tensor], calls: int) -> float:
    for _ in range(3):
        run()
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--calls", type=int, default=20)
    parser.add_argument("--rows", type=int, default=200)
    parser.add_argument("--packed", action="store_true", help="search-step products, plain against packed weights")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.packed:
        packed_rates(args.calls)
        return
    n, steps = args.rows, 20
    # name: (a's shape, b's shape, a transposed, b transposed) for the product a @ b
    products = {
        "loss logits x W^T": ((512, 512), (8000, 512), False, True),
        "loss input grad g W": ((512, 8000), (8000, 512), False, False),
        "loss weight grad g^T x": ((512, 8000), (512, 512), True, False),
        "step h W_hh^T": ((n, 512), (1536, 512), False, True),
        "step backward d W_hh": ((n, 1536), (1536, 512), False, False),
        "weight grad d^T h (N·T rows)": ((n * steps, 1536), (n * steps, 512), True, False),
    }
    print(f"torch {torch.__version__}, {args.threads} threads, oneDNN float32: {matmul.onednn_float32()}")
    for dtype in (torch.float32, torch.bfloat16):
        for name, (sa, sb, ta, tb) in products.items():
            a, b = torch.randn(*sa, dtype=dtype), torch.randn(*sb, dtype=dtype)
            a, b = (a.t() if ta else a), (b.t() if tb else b)
            gflop = 2 * a.size(0) * a.size(1) * b.size(1) / 1e9
            ours = _median_ms(partial(matmul.mm, a, b), args.calls)
            theirs = _median_ms(partial(torch.matmul, a, b), args.calls)
            print(
                f"{str(dtype).removeprefix('torch.'):9s} {name:30s} torch {gflop / theirs * 1e3:5.0f}  "
                f"seq2seq.kernels.matmul {gflop / ours * 1e3:5.0f} GFLOP/s  ({theirs / ours:.2f}x)"
            )


def packed_rates(calls: int) -> None:
    """Milliseconds of ``matmul.linear(x, W)`` with W plain and packed (see the docstring)."""
    weights = {"step W_hh": (1536, 512), "output projection": (8000, 512)}
    for dtype in (torch.float32, torch.bfloat16):
        for name, shape in weights.items():
            w = torch.randn(*shape, dtype=dtype)
            packed = matmul.pack(w)
            if not matmul.is_packed(packed):
                print(f"{str(dtype).removeprefix('torch.')}: oneDNN does not pack these weights here")
                break
            for rows in (1, 5, 40, 320):
                x = torch.randn(rows, shape[1], dtype=dtype)
                plain = _median_ms(partial(matmul.linear, x, w), calls)
                ours = _median_ms(partial(matmul.linear, x, packed), calls)
                print(
                    f"{str(dtype).removeprefix('torch.'):9s} {name:18s} {rows:4d} rows  plain {plain:7.3f} ms  "
                    f"packed {ours:7.3f} ms  ({plain / ours:.2f}x)"
                )


if __name__ == "__main__":
    main()

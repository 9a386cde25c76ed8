"""Micro-benchmark: Gumbel-softmax selector forward+backward versus `F.gumbel_softmax`.

Prints Markdown tables of median wall times (time.perf_counter, one thread, after warmup,
cases interleaved round-robin):
  1. forward+backward of `GumbelSoftmaxSelector.select` (soft and hard) and of
     `torch.nn.functional.gumbel_softmax` (soft and hard) on logits of a few shapes, with a
     fair backward for both: `(y * weights).sum().backward()`, `weights` fixed and random;
  2. the cost of the Gumbel noise alone: `gumbel_noise` (torch.rand + clamp + two logs) versus
     `-log(Exponential(1))` drawn with `exponential_` (what `F.gumbel_softmax` does).

Our selector also computes the env action (argmax), log π(a) and the entropy, which
`F.gumbel_softmax` does not; that work is part of `select()` and is timed with it.

Target: ours (soft) at most 0.5x the time of F.gumbel_softmax at [4096, 18], and no slower
at [256, 2].

Usage: python benchmarks/selectors_micro.py [--repeats 200] [--warmup 20]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
from torch.nn import functional as F

from rlgumbel.selectors import GumbelSoftmaxSelector, gumbel_noise

SHAPES = [(4096, 18), (1024, 6), (256, 2)]
TEMPERATURE = 0.5


def median_microseconds(cases: dict[str, Callable[[], object]], repeats: int, warmup: int) -> dict[str, float]:
    """Median wall time in µs of each case, timed round-robin so that load from other
    processes on a shared machine hits every case alike."""
    for fn in cases.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(repeats):
        for name, fn in cases.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(samples) * 1e6 for name, samples in times.items()}


def forward_backward_cases(shape: tuple[int, int]) -> dict[str, Callable[[], None]]:
    """One closure per method: fresh leaf logits, select, fair linear backward."""
    generator = torch.Generator().manual_seed(0)
    base = torch.randn(shape, generator=generator)
    weights = torch.randn(shape, generator=generator)
    soft, hard = GumbelSoftmaxSelector(hard=False), GumbelSoftmaxSelector(hard=True)

    def ours(selector: GumbelSoftmaxSelector) -> Callable[[], None]:
        def run() -> None:
            logits = base.clone().requires_grad_()
            (selector.select(logits, TEMPERATURE, generator).action * weights).sum().backward()

        return run

    def torchs(is_hard: bool) -> Callable[[], None]:
        def run() -> None:
            logits = base.clone().requires_grad_()
            (F.gumbel_softmax(logits, tau=TEMPERATURE, hard=is_hard) * weights).sum().backward()

        return run

    return {"soft": ours(soft), "hard": ours(hard), "torch_soft": torchs(False), "torch_hard": torchs(True)}


def noise_cases(shape: tuple[int, int]) -> dict[str, Callable[[], object]]:
    generator = torch.Generator().manual_seed(0)
    return {
        "gumbel_noise": lambda: gumbel_noise(torch.Size(shape), generator, torch.float32),
        "exponential_": lambda: torch.empty(shape).exponential_(generator=generator).log_().neg_(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=20)
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(
        f"torch {torch.__version__}, 1 thread, median of {args.repeats} after {args.warmup} warmup, "
        f"temperature {TEMPERATURE}\n"
    )

    print(
        "| logits | ours soft (µs) | torch soft (µs) | ours/torch soft "
        "| ours hard (µs) | torch hard (µs) | ours/torch hard |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for shape in SHAPES:
        t = median_microseconds(forward_backward_cases(shape), args.repeats, args.warmup)
        print(
            f"| [{shape[0]}, {shape[1]}] | {t['soft']:.1f} | {t['torch_soft']:.1f} "
            f"| {t['soft'] / t['torch_soft']:.2f} | {t['hard']:.1f} | {t['torch_hard']:.1f} "
            f"| {t['hard'] / t['torch_hard']:.2f} |"
        )

    print("\nNoise alone (float32):\n")
    print("| shape | gumbel_noise: rand+clamp+2 logs (µs) | -log(exponential_) (µs) | ratio |")
    print("|---|---:|---:|---:|")
    for shape in SHAPES:
        t = median_microseconds(noise_cases(shape), args.repeats, args.warmup)
        print(
            f"| [{shape[0]}, {shape[1]}] | {t['gumbel_noise']:.1f} | {t['exponential_']:.1f} "
            f"| {t['gumbel_noise'] / t['exponential_']:.2f} |"
        )


if __name__ == "__main__":
    main()

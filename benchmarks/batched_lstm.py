"""Training-step cost of K candidate LSTMs: one at a time, block-diagonal, grouped matmuls.

Why: issue 16 asks whether the default job's candidates (K = 20, hidden 32, batch 8,
730-day windows, 36 inputs) train faster stacked into one model. On a GPU one step costs
the same from batch 8 to 160; on a CPU the question is open, so this measures, in one run,
one torch thread, forward + backward of the recurrent core and a linear head:

(a) per candidate: K calls of ``torch.nn.LSTM`` (oneDNN's fused kernel on x86 CPUs);
(b) block-diagonal: one ``torch.nn.LSTM`` of hidden K x 32 over the K candidates' inputs
    side by side (one oneDNN call; K x the useful work, the off-block weights wasted);
(c) grouped: the K cells stepped together with batched matmuls (``torch.baddbmm``), the
    time loop in Python, autograd through it.

    python benchmarks/batched_lstm.py [--candidates K] [--repeat R]

Prints one table (best of R, seconds per training step of all K candidates) and one JSON line.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable

import torch

BATCH, DAYS, INPUTS, HIDDEN, OUTPUTS = 8, 730, 36, 32, 6


def per_candidate(k: int) -> Callable[[], None]:
    lstms = [torch.nn.LSTM(INPUTS, HIDDEN, batch_first=True) for _ in range(k)]
    heads = [torch.nn.Linear(HIDDEN, OUTPUTS) for _ in range(k)]
    x = torch.randn(BATCH, DAYS, INPUTS)

    def step() -> None:
        for lstm, head in zip(lstms, heads, strict=True):
            h, _ = lstm(x)
            head(h).square().mean().backward()

    return step


def block_diagonal(k: int) -> Callable[[], None]:
    lstm = torch.nn.LSTM(k * INPUTS, k * HIDDEN, batch_first=True)
    head = torch.nn.Linear(k * HIDDEN, k * OUTPUTS)
    x = torch.randn(BATCH, DAYS, k * INPUTS)

    def step() -> None:
        h, _ = lstm(x)
        head(h).square().mean().backward()

    return step


def grouped(k: int) -> Callable[[], None]:
    w_ih = (0.1 * torch.randn(k, 4 * HIDDEN, INPUTS)).requires_grad_()
    w_hh = (0.1 * torch.randn(k, 4 * HIDDEN, HIDDEN)).requires_grad_()
    bias = torch.zeros(k, 4 * HIDDEN, requires_grad=True)
    w_out = (0.1 * torch.randn(k, OUTPUTS, HIDDEN)).requires_grad_()
    x = torch.randn(k, BATCH, DAYS, INPUTS)

    def step() -> None:
        gates_x = torch.einsum("kbti,kgi->kbtg", x, w_ih) + bias[:, None, None]
        h = x.new_zeros(k, BATCH, HIDDEN)
        c = x.new_zeros(k, BATCH, HIDDEN)
        hs = []
        for gates_t in gates_x.unbind(2):  # unbind: one backward for all steps
            i, f, g, o = torch.baddbmm(gates_t, h, w_hh.transpose(1, 2)).chunk(4, dim=-1)
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            h = torch.sigmoid(o) * torch.tanh(c)
            hs.append(h)
        out = torch.einsum("kbth,koh->kbto", torch.stack(hs, 2), w_out)
        out.square().mean().backward()

    return step


def best(step: Callable[[], None], repeat: int) -> float:
    step()  # warm-up: oneDNN primitives, allocator
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        step()
        times.append(time.perf_counter() - started)
    return min(times)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candidates", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    torch.manual_seed(0)
    k = args.candidates
    seconds = {
        "per_candidate": best(per_candidate(k), args.repeat),
        "block_diagonal": best(block_diagonal(k), args.repeat),
        "grouped": best(grouped(k), args.repeat),
    }
    print(f"{'K = ' + str(k) + ' candidates':<24}{'s / step':>10}{'vs per candidate':>18}")
    for name, s in seconds.items():
        print(f"{name:<24}{s:>10.3f}{seconds['per_candidate'] / s:>17.2f}x")
    print(json.dumps({"candidates": k, **{k_: round(v, 4) for k_, v in seconds.items()}}))


if __name__ == "__main__":
    main()

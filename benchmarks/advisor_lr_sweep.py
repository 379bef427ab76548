"""The best AdamW LR of a benchmark workload, for the advisor's LR-by-size anchors.

Trains one workload at a few peak LRs (the workload's own schedule, task defaults and
batch) for a fixed number of steps and prints the final validation loss and metric of each.
The recurrent anchor in ``optiwise.knowledge`` (``_RNN_LR``) comes from

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/advisor_lr_sweep.py \\
        shakespeare-char-lstm --steps 1000 --lrs 1e-3,3e-3,6e-3,1.2e-2

(results in benchmarks/results/advisor_lr_sweep.md).  ``--gru`` swaps the char LSTM for a
1-layer GRU (64-wide embedding, 192 hidden: 165k parameters) on the same data, to check how
the LR moves with the model size.
"""

from __future__ import annotations

import argparse
import dataclasses
import time

from torch import Tensor, nn

from optiwise.bench import workloads
from optiwise.bench.protocol import train_run
from optiwise.bench.workloads import WORKLOADS, Problem, Workload


class CharGRU(nn.Module):
    """A 1-layer GRU character model: embedding, GRU, linear head."""

    def __init__(self, vocab: int, dim: int = 64, hidden: int = 192) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.gru = nn.GRU(dim, hidden, batch_first=True)
        self.head = nn.Linear(hidden, vocab)

    def forward(self, idx: Tensor) -> Tensor:
        return self.head(self.gru(self.embed(idx))[0])


def _char_gru(work: Workload, seed: int, limit: int | None) -> Problem:
    text = workloads._shakespeare(limit)
    return workloads._char_problem(work, seed, text, CharGRU(len(text.vocab)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workload", choices=sorted(WORKLOADS))
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--lrs", default="1e-3,3e-3,6e-3,1.2e-2")
    parser.add_argument("--optimizer", default="adamw")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--gru", action="store_true", help="a 165k-parameter char GRU instead")
    args = parser.parse_args()
    work = WORKLOADS[args.workload]
    if args.gru:
        if not work.name.startswith("shakespeare-char"):
            parser.error("--gru needs a shakespeare-char workload")
        work = dataclasses.replace(work, name="shakespeare-char-gru", factory=_char_gru)
    print(f"{work.name}: {args.optimizer}, {args.steps} steps at batch {work.batch_size}")
    print(f"{'lr':>10} {'val_loss':>10} {work.metric:>14} {'seconds':>8}")
    for lr in (float(x) for x in args.lrs.split(",")):
        start = time.perf_counter()
        r = train_run(work, args.optimizer, lr, args.seed, budget=args.steps)
        flag = " (diverged)" if r.diverged else ""
        print(
            f"{lr:>10.3g} {r.final_val_loss:>10.4f} {r.final_metric:>14.4f} "
            f"{time.perf_counter() - start:>8.0f}{flag}",
            flush=True,
        )


if __name__ == "__main__":
    main()

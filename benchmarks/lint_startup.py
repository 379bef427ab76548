"""Startup cost of ``optiwise lint``: the median wall time of linting one small file, minus
nothing, next to ``python -c pass``, over several repetitions.

    python benchmarks/lint_startup.py [--repeat 15]

Prints both medians, their difference (what optiwise adds) and their ratio.  Target: the
difference stays <= 0.3 s.  The children write and reuse bytecode in a temporary cache (as
an installed package has its .pyc files), whatever PYTHONDONTWRITEBYTECODE says here.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SCRIPT = """\
import torch
model = Net()
opt = torch.optim.Adam(model.parameters(), lr=1e-3, weight_decay=0.01)
for x, y in loader:
    opt.zero_grad()
    loss_fn(model(x), y).backward()
    opt.step()
"""


def _time(cmd: list[str], repeat: int, env: dict[str, str]) -> list[float]:
    out = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        subprocess.run(
            cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False, env=env
        )
        out.append(time.perf_counter() - t0)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeat", type=int, default=15)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "train.py"
        path.write_text(SCRIPT)
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        env["PYTHONPYCACHEPREFIX"] = str(Path(tmp) / "pycache")
        lint = [sys.executable, "-m", "optiwise.cli", "lint", str(path)]
        _time(lint, 2, env)  # fill the bytecode cache
        base = statistics.median(_time([sys.executable, "-c", "pass"], args.repeat, env))
        cost = statistics.median(_time(lint, args.repeat, env))
    print(f"python -c pass       median {base:.3f} s")
    print(f"optiwise lint 1 file median {cost:.3f} s")
    print(f"added by optiwise    {cost - base:.3f} s (target <= 0.3 s); ratio {cost / base:.1f}x")


if __name__ == "__main__":
    main()

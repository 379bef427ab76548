"""Every optimizer and path under FSDP2 (``fully_shard``, 2 CPU processes, gloo) against
one process; sharded checkpoints (torch.distributed.checkpoint) resume exactly.

One spawn of 2 processes for the module runs every case (``fsdp2_worker.py``); each test
compares one case's parameters after the steps with the same case run here in one process.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.distributed as dist

from tests.optim import fsdp2_worker

pytestmark = pytest.mark.skipif(
    not (dist.is_available() and dist.is_gloo_available()),
    reason="torch.distributed with gloo is not available in this torch build",
)

#: Cases whose step takes the norm of whole tensors in the fused path: each rank sums its
#: shard's rows in fp32 (rows that start at other elements than in one process) before the
#: float64 all-reduce, so the norms, hence the trust ratios, differ from one process's by a
#: few fp32 ulps; after 3 steps the parameters (of magnitude <= 1) by at most ~6e-8. The
#: tolerance is two fp32 ulps at 1 plus one part in a million. Every other case is exact:
#: the gradients are the single process's bit for bit (see fsdp2_worker) and the steps are
#: elementwise (or, for the per-tensor and foreach paths' norms, computed by DTensor ops
#: that give one process's value).
ROUNDED = {"lamb-fused", "lars-fused", "lookahead_lamb-fused"}
TOLERANCE = {"rtol": 1e-6, "atol": 2.5e-7}


@pytest.fixture(scope="module")
def sharded() -> Any:
    with tempfile.TemporaryDirectory(prefix="optiwise-fsdp2-") as out:
        torch.multiprocessing.start_processes(
            fsdp2_worker.worker,
            args=(str(Path(out) / "store"), out),
            nprocs=2,
            start_method="spawn",
        )
        yield [torch.load(Path(out) / f"rank{r}.pt") for r in range(2)]


def _check(name: str, got: list[torch.Tensor], want: list[torch.Tensor]) -> None:
    assert len(got) == len(want)
    for i, (g, w) in enumerate(zip(got, want, strict=True)):
        if name in ROUNDED:
            torch.testing.assert_close(g, w, **TOLERANCE, msg=lambda m, i=i: f"param {i}: {m}")
        else:
            assert torch.equal(g, w), f"{name}: param {i} differs by {(g - w).abs().max():.3g}"


@pytest.mark.parametrize("name", list(fsdp2_worker.CASES))
def test_sharded_step_matches_one_process(sharded: Any, name: str) -> None:
    rank0, rank1 = sharded
    assert name not in rank0["errors"], rank0["errors"][name]
    got = rank0["cases"][name]
    # the two ranks gathered the same parameters
    assert all(map(torch.equal, got, rank1["cases"][name]))
    before = fsdp2_worker.full(fsdp2_worker.make_model())
    assert not all(map(torch.equal, got, before)), "the steps did not change the parameters"
    _check(name, got, fsdp2_worker.reference(name))


@pytest.mark.parametrize("name", fsdp2_worker.CHECKPOINT_CASES)
def test_sharded_checkpoint_resumes_exactly(sharded: Any, name: str) -> None:
    rank0, _ = sharded
    key = f"checkpoint:{name}"
    assert key not in rank0["errors"], rank0["errors"][key]
    run = rank0["checkpoints"][name]
    assert all(map(torch.equal, run["straight"], run["resumed"]))
    # the resumed run continued from the checkpoint, not from the initial weights
    _check(name, run["straight"], _four_steps(name))


def _four_steps(name: str) -> list[torch.Tensor]:
    model = fsdp2_worker.make_model()
    fsdp2_worker.train(model, fsdp2_worker.CASES[name](model.parameters()), 4)
    return fsdp2_worker.full(model)


@pytest.mark.parametrize("name", list(fsdp2_worker.REFUSED))
def test_whole_matrix_optimizers_refuse_dtensor_parameters(sharded: Any, name: str) -> None:
    rank0, _ = sharded
    assert name in rank0["refused"], f"{name} accepted DTensor parameters"
    assert "DTensor" in rank0["refused"][name] and "DDP" in rank0["refused"][name]


@pytest.mark.parametrize("name", fsdp2_worker.PARTIAL_CASES)
def test_partial_gradients_are_placed_as_their_parameters(sharded: Any, name: str) -> None:
    """A Partial gradient's local tensor is not a shard of the gradient: the step places it
    as its (sharded) parameter first, and equals the step on the whole tensors."""
    rank0, _ = sharded
    key = f"partial:{name}"
    assert key not in rank0["errors"], rank0["errors"][key]
    _check(name, rank0["partial"][name], fsdp2_worker.partial_grad_step(name, sharded=False))

"""The linter's torch-free table of optimizers, schedulers and the registry is the live one,
and ``optiwise lint`` imports no torch."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from optiwise.audit import _api
from optiwise.audit._api_gen import build, render, stored


def test_stored_table_matches_the_installed_torch_and_registry() -> None:
    # Regenerate with `python -m optiwise.audit._api_gen` when this fails.
    assert render(build()) == stored()


def test_lookups_follow_the_live_objects() -> None:
    import torch

    from optiwise.optim.registry import get_entry, resolve_optimizer

    adam = _api.optimizer_class("torch.optim.Adam")
    assert adam is not None and adam.name == "Adam" and adam.sig.positional[:2] == ("params", "lr")
    assert adam.sig.defaults["betas"] == torch.optim.Adam([torch.zeros(1)]).defaults["betas"]
    assert _api.optimizer_class("torch.optim.lr_scheduler.StepLR") is None
    step = _api.scheduler_class("torch.optim.lr_scheduler.StepLR")
    assert step is not None and "step_size" in step.sig.names
    assert _api.canonical_optimizer("AdamW") == "adamw"
    assert _api.canonical_optimizer("Lookahead-AdamW") == "lookahead_adamw"
    assert _api.canonical_optimizer("no such optimizer") is None
    sgd = _api.registry_info("sgd")
    assert sgd is not None and dict(sgd.fixed) == dict(get_entry("sgd").fixed)
    for task in ("vision_cnn", "language_transformer", None):
        live = dict(resolve_optimizer("adamw", task=task).hparams)
        assert _api.registry_info("adamw").defaults(task) == live  # type: ignore[union-attr]


def test_lint_command_imports_no_torch(tmp_path: Path) -> None:
    script = tmp_path / "train.py"
    script.write_text("import torch\nopt = torch.optim.Adam(m.parameters(), weight_decay=0.1)\n")
    code = textwrap.dedent(
        f"""
        import sys
        from optiwise.cli import main
        status = main(["lint", {str(script)!r}])
        heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "numpy"))
        print("STATUS", status, "HEAVY", heavy)
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert "OW101" in out
    assert out.strip().endswith("STATUS 1 HEAVY []"), out


def test_every_public_name_of_the_package_resolves() -> None:
    import optiwise

    for name in optiwise.__all__:
        assert getattr(optiwise, name) is not None, name
    assert callable(optiwise.audit) and callable(optiwise.tune)

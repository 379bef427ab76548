"""Values and objects the linter follows beyond literals: argparse defaults, constants,
config dicts, dataclass defaults, config files, param groups, call sites and wrappers."""

from __future__ import annotations

from pathlib import Path

from optiwise.audit.lint import lint_file, lint_source


def codes(src: str) -> list[str]:
    return [f.code for f in lint_source(src)]


ARGPARSE = """
import argparse
import torch
parser = argparse.ArgumentParser()
parser.add_argument("--lr", type=float, default={default})
parser.add_argument("--weight-decay", type=float, default=0.0)
args = parser.parse_args()
"""


def test_argparse_defaults() -> None:
    src = ARGPARSE.format(default=20) + "opt = torch.optim.Adam(p, lr=args.lr)\n"
    (f,) = lint_source(src)
    assert f.code == "OW201" and "lr=20" in f.message
    assert codes(ARGPARSE.format(default="'20'") + "opt = torch.optim.Adam(p, lr=args.lr)\n") == [
        "OW201"
    ]  # a string default goes through type=float
    assert codes(ARGPARSE.format(default=1e-3) + "opt = torch.optim.Adam(p, lr=args.lr)\n") == []
    wd = ARGPARSE.format(default=1e-3).replace(
        'decay", type=float, default=0.0', 'decay", type=float, default=0.1'
    )
    assert codes(
        wd + "opt = torch.optim.Adam(p, lr=args.lr, weight_decay=args.weight_decay)\n"
    ) == ["OW101"]
    changed = (
        ARGPARSE.format(default=20) + "args.lr = 1e-3\nopt = torch.optim.Adam(p, lr=args.lr)\n"
    )
    assert codes(changed) == []  # the script changes it: unknown
    req = ARGPARSE.format(default=20).replace("default=20", "default=20, required=True")
    assert codes(req + "opt = torch.optim.Adam(p, lr=args.lr)\n") == []


def test_argparse_namespace_passed_to_a_function() -> None:
    src = ARGPARSE.format(default=20) + (
        "def build(args, model):\n"
        "    return torch.optim.Adam(model.parameters(), lr=args.lr)\n"
        "opt = build(args, model)\n"
    )
    assert codes(src) == ["OW201"]


def test_constants_dicts_and_dataclass_defaults() -> None:
    head = "import torch\n"
    assert codes(head + "LR = 2.0\nopt = torch.optim.Adam(p, lr=LR)\n") == ["OW201"]
    cfg = head + "cfg = {'optim': {'lr': 2.0}, 'wd': 0.1}\n"
    assert codes(cfg + "opt = torch.optim.Adam(p, lr=cfg['optim']['lr'])\n") == ["OW201"]
    assert codes(cfg + "opt = torch.optim.Adam(p, weight_decay=cfg.get('wd', 0))\n") == ["OW101"]
    assert codes(cfg + "cfg['wd'] = 0\nopt = torch.optim.Adam(p, weight_decay=cfg['wd'])\n") == []
    assert codes(head + "c = dict(lr=2.0)\nopt = torch.optim.Adam(p, lr=c['lr'])\n") == ["OW201"]
    dc = (
        head + "from dataclasses import dataclass, field\n"
        "@dataclass\nclass Config:\n    lr: float = 2.0\n    wd: float = field(default=0.1)\n"
    )
    assert codes(dc + "c = Config()\nopt = torch.optim.Adam(p, lr=c.lr)\n") == ["OW201"]
    assert codes(dc + "c = Config(lr=1e-3)\nopt = torch.optim.Adam(p, lr=c.lr)\n") == []
    assert codes(dc + "c = Config()\nopt = torch.optim.Adam(p, lr=1e-3, weight_decay=c.wd)\n") == [
        "OW101"
    ]
    assert codes(dc + "opt = torch.optim.Adam(p, lr=Config.lr)\n") == ["OW201"]


def test_config_files_next_to_the_script(tmp_path: Path) -> None:
    (tmp_path / "cfg.json").write_text('{"optim": {"lr": 2.0, "betas": [0.9, 0.999]}}')
    script = tmp_path / "train.py"
    script.write_text(
        "import json\nimport torch\ncfg = json.load(open('cfg.json'))\n"
        "opt = torch.optim.Adam(p, lr=cfg['optim']['lr'])\n"
    )
    assert [f.code for f in lint_file(script)] == ["OW201"]
    (tmp_path / "cfg.yaml").write_text("lr: 1.0e-3\nweight_decay: 0.05\n")
    script.write_text(
        "import yaml\nimport torch\nwith open('cfg.yaml') as fh:\n    cfg = yaml.safe_load(fh)\n"
        "opt = torch.optim.Adam(p, lr=cfg['lr'], weight_decay=cfg['weight_decay'])\n"
    )
    assert [f.code for f in lint_file(script)] == ["OW101"]
    script.write_text(  # only files beside the script are read
        "import json\nimport torch\ncfg = json.load(open('../cfg.json'))\n"
        "opt = torch.optim.Adam(p, lr=cfg['optim']['lr'])\n"
    )
    assert lint_file(script) == []


def test_param_groups_and_add_param_group() -> None:
    head = "import torch\n"
    groups = "groups = [{'params': a, 'weight_decay': 0.05}, {'params': b, 'weight_decay': 0.0}]\n"
    assert codes(head + groups + "opt = torch.optim.Adam(groups, lr=1e-3)\n") == ["OW101"]
    assert codes(head + groups + "opt = torch.optim.AdamW(groups, lr=1e-3)\n") == []
    inline = "opt = torch.optim.Adam([{'params': a, 'lr': 5.0}], lr=1e-3)\n"
    assert codes(head + inline) == ["OW201"]
    added = "opt = torch.optim.Adam(a, lr=1e-3)\n"
    added += "opt.add_param_group({'params': b, 'weight_decay': 0.1})\n"
    (f,) = lint_source(head + added)
    assert f.code == "OW101" and f.line == 3 and "use AdamW" in f.message
    assert codes(head + added.replace("Adam(", "AdamW(")) == []


TRAIN_FN = """
import torch
def train(model, optimizer, loader):
    for x in loader:
        model(x).sum().backward()
        optimizer.step()
opt = torch.optim.AdamW(groups, lr=1e-3)
train(model, opt, loader)
"""


def test_loops_in_functions_called_with_the_optimizer() -> None:
    (f,) = lint_source(TRAIN_FN)
    assert f.code == "OW501" and f.line == 6
    other = TRAIN_FN + "train(model, something_else, loader)\n"
    assert codes(other) == []  # the call sites disagree: unknown


def test_accelerate_fabric_and_deepspeed_return_the_same_objects() -> None:
    acc = (
        "import torch\nfrom accelerate import Accelerator\naccelerator = Accelerator()\n"
        "opt = torch.optim.AdamW(groups, lr=1e-3)\n"
        "sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=1e-3, total_steps=100)\n"
        "model, opt, loader, sched = accelerator.prepare(model, opt, loader, sched)\n"
        "for x in loader:\n    opt.zero_grad()\n    accelerator.backward(model(x).sum())\n"
        "    opt.step()\n    sched.step()\n"
    )
    assert codes(acc) == []  # stepped per batch: no OneCycleLR finding after prepare
    per_epoch = acc.replace("    sched.step()\n", "") + "for e in range(3):\n    for x in loader:\n"
    per_epoch += "        opt.step()\n        opt.zero_grad()\n        model(x).sum().backward()\n"
    per_epoch += "    sched.step()\n"
    assert "OW303" in codes(per_epoch)
    fabric = (
        "import torch\nimport lightning as L\nfabric = L.Fabric()\n"
        "opt = torch.optim.AdamW(groups, lr=1e-3)\nmodel, opt = fabric.setup(model, opt)\n"
        "for x in loader:\n    fabric.backward(model(x).sum())\n    opt.step()\n"
    )
    assert codes(fabric) == ["OW501"]
    ds = (
        "import torch\nimport deepspeed\nopt = torch.optim.AdamW(groups, lr=1e-3)\n"
        "engine, opt, _, _ = deepspeed.initialize(model=model, optimizer=opt)\n"
        "for x in loader:\n    model(x).sum().backward()\n    opt.step()\n"
    )
    assert codes(ds) == ["OW501"]


EPOCHS_CALL_TRAIN = """
import torch
def train(model, optimizer, loader):
    for x in loader:
        optimizer.zero_grad()
        model(x).sum().backward()
        optimizer.step()
opt = torch.optim.AdamW(groups, lr=1e-3)
sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=1e-3, total_steps=1000)
for epoch in range(10):
    train(model, opt, loader)
    sched.step()
"""


def test_schedules_are_checked_against_steps_in_called_functions() -> None:
    (f,) = lint_source(EPOCHS_CALL_TRAIN)
    assert f.code == "OW303" and f.line == 12  # OneCycleLR stepped per epoch
    before = EPOCHS_CALL_TRAIN.replace(
        "OneCycleLR(opt, max_lr=1e-3, total_steps=1000)", "StepLR(opt, 3)"
    )
    before = before.replace(
        "    train(model, opt, loader)\n    sched.step()\n",
        "    sched.step()\n    train(model, opt, loader)\n",
    )
    (g,) = lint_source(before)
    assert g.code == "OW304" and g.line == 11
    good = EPOCHS_CALL_TRAIN.replace(
        "OneCycleLR(opt, max_lr=1e-3, total_steps=1000)", "StepLR(opt, 3)"
    )
    assert lint_source(good) == []

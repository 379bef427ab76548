"""The linter never fails on valid Python, and its messages say what is true."""
# ruff: noqa: E501  (one snippet a line reads better than wrapped strings)

from __future__ import annotations

import ast

import pytest

from optiwise.audit._analysis import Analyzer
from optiwise.audit.findings import Severity
from optiwise.audit.lint import lint_source

ODD = [
    "import torch\nx = torch.classes.my_ns.MyClass()\n",
    "import torch\ntorch.classes.load_library('x.so')\nopt = torch.classes.foo.Bar(1)\nopt.step()\n",
    "import torch\ntorch.ops.aten.add(1, 2)\ntorch.ops.my.op.default(1)\n",
    "import torch.classes as c\nc.anything.goes().step()\n",
    "from torch import classes\nclasses.x.y.z(lr=1)\n",
    "import torch\nopt = torch.optim.Adam(*args, **kwargs)\nopt.step()\n",
    "import torch\nopt = torch.optim.Adam(lr=1e-3)\n",
    "import torch\nopt = torch.optim.Adam()\n",
    "import torch\nopt = torch.optim.SGD(params, 0.1, 0.9, 0, 1e-4, True)\n",
    "import torch\nopt = torch.optim.SGD(params, lr='0.1', momentum=None)\n",
    "import torch\nopt = torch.optim.Adam(params, lr=float('nan'), weight_decay=float('inf'))\n",
    "import torch\nopt = torch.optim.Adam(params, lr=1e400, betas=(0.9,), eps=-1)\n",
    "import torch\nopt = torch.optim.Adam(params, betas=[b1, b2], weight_decay=wd or 0.1)\n",
    "import torch\nopt = torch.optim.Adam([{'params': p, 'lr': 1}, *rest, {**d}])\n",
    "import torch\nopt = torch.optim.Adam([{'params': p, 1: 2, None: 3}], lr=x[0])\n",
    "import torch\ns = torch.optim.lr_scheduler.OneCycleLR()\ns.step()\n",
    "import torch\ns = torch.optim.lr_scheduler.OneCycleLR(*a)\nfor _ in range(3):\n    s.step()\n",
    "import optiwise\no = optiwise.create_optimizer()\no.step()\n",
    "import optiwise\no = optiwise.create_optimizer(123, m, lr=None)\n",
    "import optiwise\no = optiwise.create_optimizer('no-such', m)\n",
    "import optiwise\no = optiwise.create_optimizer('adam', m, task='nope', weight_decay=1)\n",
    "import optiwise\no = optiwise.create_optimizer('sgd', m, nesterov=False)\n",
    "import optiwise\ns = optiwise.create_scheduler(None, o)\ns.step()\n",
    "opt = opt\nopt.step()\nopt = opt.step()\n",
    "a = b = c = a\nwhile a:\n    a.step()\n    b.backward()\n",
    "def f():\n    return f()\nopt = f()\nfor x in y:\n    opt.step()\n",
    "def f(x):\n    return g(x)\ndef g(x):\n    return f(x)\nopt = f(1)\nopt.step()\n",
    "class A:\n    def __init__(self):\n        self.opt = self.opt\n    def s(self):\n        self.opt.step()\n",
    "class A:\n    @staticmethod\n    def s():\n        self.opt.step()\n",
    "class A:\n    def s():\n        pass\n",
    "import torch\nclass M(torch.nn.Module):\n    opt: torch.optim.Adam\n    def f(self):\n        self.opt.step()\n",
    "lambda: (yield)\n",
    "async def f():\n    async for x in y:\n        async with z:\n            await opt.step()\n",
    "def f(*, a=1, **k):\n    global g\n    g = 1\n    nonlocal_x = [i for i in range(3) if (j := i)]\n",
    "match x:\n    case {'lr': lr, **rest}:\n        opt.step()\n    case [1, *_]:\n        pass\n    case Point(x=0) | None:\n        pass\n",
    "try:\n    pass\nexcept* ValueError:\n    opt.zero_grad()\n",
    "x: int\ny: 'torch.optim.Adam'\ny.step()\n",
    "import torch\nt = torch.load\nckpt = t('x')\nmodel.load_state_dict(ckpt['model'])\n",
    "import torch\ntorch.save(d := {'model': m.state_dict()}, 'x')\nck = torch.load('x')\nm.load_state_dict(ck[k])\n",
    "import torch\ntorch.save({**a, 'model': m.state_dict(), 1: 2}, p)\n",
    "import torch\ntorch.save()\ntorch.load()\n",
    "from . import x\nfrom .. import *\nfrom torch.optim import *\nAdam(p, weight_decay=1).step()\n",
    "import torch\nfor i in range(*r):\n    for j in range():\n        opt.step()\n",
    "import torch\nopt = torch.optim.Adam(p, lr=10**10**10)\n",
    "import torch\nopt = torch.optim.Adam(p, lr=-(-(-1e-3)), weight_decay=not 0)\n",
    "import torch\nopt = torch.optim.Adam(p, lr=1 / 0)\n",
    "import torch\nopt = torch.optim.Adam(p, lr=2 ** -1000000)\n",
    "import torch\nopt = torch.optim.Adam(p, lr=(1e-3).real)\n",
    "x = [1][0]\nx[0] = x\nx.step()\ndel x\nx.step()\n",
    "import torch\nscaler = torch.cuda.amp.GradScaler()\nscaler.scale(l).backward()\nscaler.step()\n",
    "import torch\nscaler = torch.cuda.amp.GradScaler()\nscaler.scale().backward()\n",
    "import torch\ntorch.nn.utils.clip_grad_norm_()\ntorch.autograd.backward()\n",
    "import lightning as L\nclass M(L.LightningModule):\n    def configure_optimizers(self):\n        return\n",
    "import lightning as L\nclass M(L.LightningModule):\n    def configure_optimizers(self):\n        return [{}], [{'scheduler': None}], {1: 2}\n",
    "import transformers\nm = transformers.AutoModel.from_pretrained()\nopt = transformers.AdamW()\n",
    "import timm\nm = timm.create_model()\nm = timm.create_model(1)\n",
    "import argparse\np = argparse.ArgumentParser()\np.add_argument()\np.add_argument('--lr', default=p)\na = p.parse_args()\n",
    "import argparse\np = argparse.ArgumentParser()\np.add_argument('--lr', '-l', type=float, default=[1])\nargs = p.parse_args()\nimport torch\ntorch.optim.Adam(q, lr=args.lr)\n",
    "cfg = {'lr': 1, **other}\nimport torch\ntorch.optim.SGD(p, lr=cfg['lr'], momentum=cfg['m'])\n",
    "cfg = dict(lr=0.1)\ncfg['lr'] = 5\nimport torch\ntorch.optim.Adam(p, lr=cfg['lr'])\n",
    "import json\ncfg = json.load(open('no_such_file.json'))\nimport torch\ntorch.optim.Adam(p, lr=cfg['lr'])\n",
    "import yaml\ncfg = yaml.safe_load(open('../../etc/passwd'))\n",
    "import torch\nopt.add_param_group()\nopt.add_param_group({'params': p, 'weight_decay': 1})\n",
    "import torch\nfrom accelerate import Accelerator\na = Accelerator()\nx = a.prepare()\nm, o = a.prepare(m)\n",
    "import deepspeed\nengine, *_ = deepspeed.initialize()\nengine.step()\n",
    "import torch\n# optiwise: ignore[\nopt = torch.optim.Adam(p)  # optiwise: ignore[]\n",
    "import torch\nx = " + "(" * 50 + "1" + ")" * 50 + "\n",
    "import torch\nopt = torch.optim.Adam(p)\n" + "if a:\n    " * 1 + "opt.step()\n" * 1,
]


@pytest.mark.parametrize("source", ODD, ids=[str(i) for i in range(len(ODD))])
def test_valid_odd_python_never_fails(source: str) -> None:
    ast.parse(source)  # every snippet is valid Python
    Analyzer(ast.parse(source), strict=True).run()  # no rule raises
    assert [f for f in lint_source(source, "odd.py") if f.code == "OW900"] == []


def test_a_failing_rule_drops_only_its_own_findings(monkeypatch: pytest.MonkeyPatch) -> None:
    src = (
        "import torch\nopt = torch.optim.Adam(p, lr=1e-3, weight_decay=0.1)\n"
        "s = torch.optim.lr_scheduler.ReduceLROnPlateau(opt)\ns.step()\n"
    )

    def boom(self: Analyzer) -> None:
        self.add("OW305", self.tree, "half done")
        raise RuntimeError("a rule bug")

    monkeypatch.setattr(Analyzer, "check_plateau", boom)
    assert [f.code for f in lint_source(src)] == ["OW101"]
    with pytest.raises(RuntimeError, match="a rule bug"):
        Analyzer(ast.parse(src), strict=True).run()


def test_adam_weight_decay_is_critical_and_says_use_adamw_and_retune() -> None:
    (f,) = lint_source("import torch\nopt = torch.optim.Adam(p, lr=1e-3, weight_decay=1e-4)\n")
    assert f.code == "OW101" and f.severity is Severity.CRITICAL
    assert "use AdamW" in f.message
    assert "AdamW" in f.fix and "multiplied by the LR" in f.fix and "1:1" in f.fix
    assert "retune" in f.fix and "Loshchilov" in f.fix


def test_decay_on_all_parameters_names_a_default_as_a_default() -> None:
    given = lint_source("import torch\nopt = torch.optim.AdamW(m.parameters(), weight_decay=0.1)\n")
    assert given[0].message.startswith("weight_decay=0.1 on m.parameters()")
    (default,) = lint_source("import torch\nopt = torch.optim.AdamW(m.parameters(), lr=1e-3)\n")
    assert "weight_decay=" not in default.message
    assert "AdamW's default weight decay (0.01, not passed)" in default.message

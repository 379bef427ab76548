"""Training scripts for the linter tests: flawed ones with the exact findings they must
produce, and correct ones, in the styles of common training loops, that must produce none."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Case:
    name: str
    source: str
    expected: tuple[tuple[str, int, int], ...]  # (code, line, col), 1-based


FLAWED: list[Case] = []
CORRECT: list[Case] = []


def flawed(name: str, expected: list[tuple[str, int, int]], source: str) -> None:
    FLAWED.append(Case(name, source.lstrip("\n"), tuple(expected)))


def correct(name: str, source: str) -> None:
    CORRECT.append(Case(name, source.lstrip("\n"), ()))


# ------------------------------------------------------------------------------------------
# OW101: Adam-family with coupled weight decay
# ------------------------------------------------------------------------------------------

flawed(
    "adam_wd_module_alias",
    [("OW101", 5, 13)],
    """
import torch.optim as optim
from torch import nn

model = nn.Linear(4, 2)
optimizer = optim.Adam(optiwise_groups, lr=1e-3, weight_decay=0.01)
""",
)

flawed(
    "adam_wd_from_import_alias_and_qualified",
    [("OW101", 6, 7), ("OW101", 7, 7), ("OW101", 8, 7)],
    """
import torch
from torch.optim import Adam as A

WD = 5e-4
groups = []
opt = A(groups, 3e-4, (0.9, 0.999), 1e-8, WD)
alt = torch.optim.NAdam(groups, weight_decay=1e-2)
old = torch.optim.adamax.Adamax(groups, weight_decay=1e-2)
""",
)

flawed(
    "adam_wd_create_optimizer",
    [("OW101", 4, 13)],
    """
from optiwise import create_optimizer as make

model = build_model()
optimizer = make("Adam", model, weight_decay=0.05)
""",
)

# ------------------------------------------------------------------------------------------
# OW201: LR outside the optimizer's range (from optiwise.knowledge)
# ------------------------------------------------------------------------------------------

flawed(
    "lr_out_of_range",
    [("OW201", 6, 37), ("OW201", 7, 31), ("OW201", 8, 59)],
    """
import torch

LR = 1e-4
params = []
groups = [{"params": params}]
adam = torch.optim.AdamW(params, lr=0.1)
sgd = torch.optim.SGD(params, LR, momentum=0.9, nesterov=True)
from_groups = torch.optim.AdamW([{"params": params, "lr": 1.0}], lr=1e-3)
dynamic = __import__("optiwise").create_optimizer("sgd", params, lr=5)  # not resolvable
""",
)

# ------------------------------------------------------------------------------------------
# OW102: SGD momentum without Nesterov
# ------------------------------------------------------------------------------------------

flawed(
    "sgd_without_nesterov",
    [("OW102", 4, 13), ("OW102", 5, 9)],
    """
from torch.optim import SGD
import optiwise

optimizer = SGD(groups, lr=0.1, momentum=0.9)
heavy = optiwise.create_optimizer("sgd_momentum", groups, lr=0.1)
""",
)

# ------------------------------------------------------------------------------------------
# OW303: scheduler stepped at the wrong granularity
# ------------------------------------------------------------------------------------------

flawed(
    "onecycle_stepped_per_epoch",
    [("OW303", 13, 5)],
    """
import torch
from torch.optim.lr_scheduler import OneCycleLR

optimizer = torch.optim.AdamW(groups, lr=1e-3)
scheduler = OneCycleLR(optimizer, max_lr=1e-3, epochs=10, steps_per_epoch=len(loader))
for epoch in range(10):
    for x, y in loader:
        optimizer.zero_grad()
        loss = model(x).sum()
        loss.backward()
        optimizer.step()
    # per-batch schedule stepped here, once per epoch
    scheduler.step()
""",
)

flawed(
    "epoch_schedule_stepped_per_batch",
    [("OW303", 12, 13)],
    """
import torch
from torch.optim import lr_scheduler

EPOCHS = 90
def train(model, loader, groups):
    optimizer = torch.optim.SGD(groups, lr=0.1, momentum=0.9, nesterov=True)
    sched = lr_scheduler.CosineAnnealingLR(optimizer, T_max=EPOCHS)
    for epoch in range(EPOCHS):
        for x in loader:
            optimizer.zero_grad(); model(x).sum().backward()
            optimizer.step()
            sched.step()
""",
)

flawed(
    "lightning_onecycle_epoch_interval",
    [("OW303", 9, 47), ("OW303", 16, 66)],
    """
import lightning as L
import torch

class Net(L.LightningModule):
    def configure_optimizers(self):
        opt = torch.optim.AdamW(self.parameters(), lr=1e-3, weight_decay=0.0)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=1e-3, total_steps=1000)
        return {"optimizer": opt,
                "lr_scheduler": {"scheduler": sched}}

class Net2(L.LightningModule):
    def configure_optimizers(self):
        opt = torch.optim.AdamW(self.parameters(), lr=1e-3, weight_decay=0.0)
        sched = torch.optim.lr_scheduler.CyclicLR(opt, 1e-4, 1e-3)
        return {"optimizer": opt,
                "lr_scheduler": {"scheduler": sched, "interval": "epoch"}}
""",
)

# ------------------------------------------------------------------------------------------
# OW304: scheduler.step() before optimizer.step()
# ------------------------------------------------------------------------------------------

flawed(
    "scheduler_before_optimizer",
    [("OW304", 9, 5), ("OW304", 15, 5)],
    """
import torch

optimizer = torch.optim.SGD(groups, lr=0.1, momentum=0.9, nesterov=True)
warmup = torch.optim.lr_scheduler.LinearLR(optimizer, start_factor=0.1, total_iters=100)
for x in loader:
    optimizer.zero_grad()
    loss = model(x).sum()
    loss.backward()
    warmup.step()
    optimizer.step()

decay = torch.optim.lr_scheduler.StepLR(optimizer, step_size=30)
for epoch in range(90):
    # the pre-1.1 order: the first value of the schedule is skipped
    decay.step()
    for x in loader:
        optimizer.zero_grad()
        model(x).sum().backward()
        optimizer.step()
""",
)

# ------------------------------------------------------------------------------------------
# OW305: ReduceLROnPlateau.step() without a metric
# ------------------------------------------------------------------------------------------

flawed(
    "plateau_without_metric",
    [("OW305", 12, 9)],
    """
from torch.optim.lr_scheduler import ReduceLROnPlateau
from torch.optim.optimizer import Optimizer

def fit(optimizer: Optimizer, epochs: int) -> None:
    plateau = ReduceLROnPlateau(optimizer, factor=0.5)
    for _ in range(epochs):
        for batch in loader:
            optimizer.zero_grad()
            loss(batch).backward()
            optimizer.step()
        val = evaluate()
        plateau.step()
""",
)

# ------------------------------------------------------------------------------------------
# OW401: weight decay on model.parameters() passed whole
# ------------------------------------------------------------------------------------------

flawed(
    "decay_on_all_parameters",
    [("OW401", 6, 19), ("OW401", 7, 17)],
    """
import torch
from torch import optim

model = torch.nn.Linear(8, 2)
trainable = filter(lambda p: p.requires_grad, model.parameters())
opt = optim.AdamW(model.parameters(), lr=1e-3)
sgd = optim.SGD(trainable, lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4)
""",
)

# ------------------------------------------------------------------------------------------
# OW501 / OW503: gradients never cleared, or cleared before the step
# ------------------------------------------------------------------------------------------

flawed(
    "missing_zero_grad",
    [("OW501", 10, 13)],
    """
import torch

class Trainer:
    def __init__(self, model):
        self.optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.0)
    def train(self, loader):
        for x, y in loader:
            loss = self.model(x).sum()
            loss.backward()
            self.optimizer.step()
""",
)

flawed(
    "zero_grad_between_backward_and_step",
    [("OW503", 6, 5)],
    """
import torch

optimizer = torch.optim.Adam(groups, lr=1e-3)
for x in loader:
    model(x).sum().backward()
    optimizer.zero_grad()
    optimizer.step()
""",
)

# ------------------------------------------------------------------------------------------
# OW502 / OW504: GradScaler loops
# ------------------------------------------------------------------------------------------

flawed(
    "clip_before_unscale",
    [("OW502", 12, 9)],
    """
import torch
from torch.nn.utils import clip_grad_norm_

scaler = torch.amp.GradScaler("cuda")
optimizer = torch.optim.Adam(groups, lr=1e-3)
for x in loader:
    optimizer.zero_grad(set_to_none=True)
    with torch.autocast("cuda", dtype=torch.float16):
        loss = model(x).sum()
    scaler.scale(loss).backward()
    if clip:
        clip_grad_norm_(model.parameters(), 1.0)
    scaler.step(optimizer)
    scaler.update()
""",
)

flawed(
    "scaled_loss_stepped_directly",
    [("OW504", 9, 9)],
    """
import torch

def train(model, loader, scaler: torch.cuda.amp.GradScaler):
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    for x in loader:
        optimizer.zero_grad()
        loss = model(x).sum()
        scaler.scale(loss).backward()
        optimizer.step()
""",
)

# ------------------------------------------------------------------------------------------
# OW601: fp16 parameters with a too small Adam eps
# ------------------------------------------------------------------------------------------

flawed(
    "fp16_eps",
    [("OW601", 5, 57), ("OW601", 6, 8)],
    """
import torch

model = Net().cuda().half()
other = Net().to(dtype=torch.float16)
opt = torch.optim.Adam(model.parameters(), lr=1e-4, eps=1e-8)
opt2 = torch.optim.RAdam(other.parameters(), lr=1e-4)
""",
)

# ------------------------------------------------------------------------------------------
# OW701 / OW702: resume without the optimizer or scheduler state
# ------------------------------------------------------------------------------------------

flawed(
    "resume_without_optimizer_state",
    [("OW701", 10, 5), ("OW702", 10, 5)],
    """
import torch

model = Net()
optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True)
scheduler = torch.optim.lr_scheduler.StepLR(optimizer, 30)

def resume(path):
    ckpt = torch.load(path, map_location="cpu")
    start = ckpt["epoch"]
    model.load_state_dict(ckpt["model"])
    return start

def save(path, epoch):
    state = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "epoch": epoch,
    }
    torch.save(state, path)
""",
)


# ------------------------------------------------------------------------------------------
# Correct scripts: no findings
# ------------------------------------------------------------------------------------------

correct(
    "plain_loop",
    """
import torch
import torch.nn.functional as F
import optiwise
from torch.optim.lr_scheduler import OneCycleLR

model = torch.nn.Sequential(torch.nn.Linear(20, 64), torch.nn.ReLU(), torch.nn.Linear(64, 3))
optimizer = torch.optim.AdamW(optiwise.param_groups(model, 0.05), lr=1e-3)
scheduler = OneCycleLR(optimizer, max_lr=3e-3, total_steps=10 * len(loader))
for epoch in range(10):
    model.train()
    for x, y in loader:
        optimizer.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()
        scheduler.step()
""",
)

correct(
    "amp_loop",
    """
import torch
from torch.amp import GradScaler, autocast

model = Net().cuda()
optimizer = torch.optim.AdamW(optiwise_groups, lr=3e-4, eps=1e-8, weight_decay=0.05)
scaler = GradScaler("cuda")
sched = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=EPOCHS)
for epoch in range(EPOCHS):
    for step, (x, y) in enumerate(loader):
        optimizer.zero_grad(set_to_none=True)
        with autocast("cuda", dtype=torch.float16):
            loss = criterion(model(x), y)
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=1.0)
        scaler.step(optimizer)
        scaler.update()
    sched.step()
""",
)

correct(
    "accumulation_loop",
    """
import torch

ACCUM = 8
optimizer = torch.optim.SGD(groups, lr=0.1, momentum=0.9, nesterov=True, weight_decay=0)
optimizer.zero_grad()
for i, (x, y) in enumerate(loader):
    loss = model(x).sum() / ACCUM
    loss.backward()
    if (i + 1) % ACCUM == 0:
        optimizer.step()
        optimizer.zero_grad()

# micro-batches accumulated inside one step
for batch in loader:
    optimizer.zero_grad()
    for micro in batch.split(4):
        model(micro).sum().backward()
    optimizer.step()
""",
)

correct(
    "lightning_style",
    """
import pytorch_lightning as pl
import torch
from torch.optim.lr_scheduler import OneCycleLR, ReduceLROnPlateau

class Classifier(pl.LightningModule):
    def training_step(self, batch, batch_idx):
        x, y = batch
        return torch.nn.functional.cross_entropy(self(x), y)

    def configure_optimizers(self):
        optimizer = torch.optim.AdamW(self.param_groups(), lr=1e-3)
        scheduler = OneCycleLR(optimizer, max_lr=1e-3, total_steps=self.trainer.max_steps)
        sched = {"scheduler": scheduler, "interval": "step"}
        return {"optimizer": optimizer, "lr_scheduler": sched}

class Plateau(pl.LightningModule):
    def configure_optimizers(self):
        optimizer = torch.optim.SGD(self.parameters(), lr=0.1, momentum=0.9, nesterov=True)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": ReduceLROnPlateau(optimizer), "monitor": "val_loss"},
        }
""",
)

correct(
    "hf_style_create_optimizer",
    """
import torch
from transformers import Trainer, get_linear_schedule_with_warmup
from optiwise import create_optimizer, param_groups

class MyTrainer(Trainer):
    def create_optimizer(self):
        self.optimizer = torch.optim.AdamW(param_groups(self.model, 0.01), lr=5e-5)
        return self.optimizer

def train(model, loader, steps):
    optimizer = create_optimizer("adamw", model, task="fine_tuning")
    scheduler = get_linear_schedule_with_warmup(optimizer, 100, steps)
    for batch in loader:
        outputs = model(**batch)
        outputs.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad()
""",
)

correct(
    "dynamic_values_are_not_guessed",
    """
import argparse
import torch

args = argparse.ArgumentParser().parse_args()
opt = torch.optim.Adam(groups, lr=args.lr, weight_decay=args.wd)
cfg = {"weight_decay": 0.1}
opt2 = torch.optim.Adam(groups, **cfg)
opt3 = torch.optim.SGD(groups, lr=0.1, momentum=args.momentum)
wd = 0.0
if args.decay:
    wd = 0.1
opt4 = torch.optim.Adam(groups, weight_decay=wd)

def train(model, optimizer, scheduler, loader):
    for x in loader:
        scheduler.step()
        model(x).sum().backward()
        optimizer.step()
""",
)

correct(
    "names_that_are_not_torch",
    """
from mylib.optim import Adam, SGD
import torch

opt = Adam(groups, lr=10.0, weight_decay=0.1)
sgd = SGD(groups, lr=1e-6, momentum=0.9)

def make():
    Adam = lambda *a, **k: None
    return Adam(groups, weight_decay=0.1)

class Local:
    def AdamW(self):
        pass
torch.optim.Adam(groups, lr=1e-3, weight_decay=0.01, decoupled_weight_decay=True)
torch.optim.NAdam(groups, weight_decay=0.01, decoupled_weight_decay=True)
""",
)

correct(
    "full_resume",
    """
import torch

model = Net()
optimizer = torch.optim.AdamW(optiwise_groups, lr=1e-3)
scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=100)

def resume(path):
    ckpt = torch.load(path)
    model.load_state_dict(ckpt["model"])
    optimizer.load_state_dict(ckpt["optimizer"])
    scheduler.load_state_dict(ckpt.get("scheduler"))

def save(path):
    torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict()}, path)

def fine_tune(path):
    # loading pretrained weights from another file is not a resume
    weights = torch.load(path)
    model.load_state_dict(weights)
""",
)

correct(
    "fp32_master_weights_and_plateau",
    """
import torch
from torch.optim.lr_scheduler import ReduceLROnPlateau

model = Net().cuda()
optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, eps=1e-8)
plateau = ReduceLROnPlateau(optimizer)
for epoch in range(10):
    for x in loader:
        optimizer.zero_grad()
        with torch.autocast("cuda", dtype=torch.float16):
            loss = model(x).sum()
        loss.backward()
        optimizer.step()
    plateau.step(validate(model))
inputs = batch.half()
""",
)

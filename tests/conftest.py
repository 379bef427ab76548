"""Shared fixtures and small real architectures used across the tests."""

from __future__ import annotations

import os

# The tests use tiny tensors: one intra-op thread is faster than two, and it keeps timings
# sane when other processes share the cores (OpenMP threads spin while they wait).
# Subprocesses started by the tests inherit the setting.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import random

import numpy as np
import pytest
import torch

from tests import models

torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)
    np.random.seed(0)
    random.seed(0)


@pytest.fixture
def resnet() -> torch.nn.Module:
    return models.TinyResNet()


@pytest.fixture
def gpt() -> torch.nn.Module:
    return models.TinyGPT()


@pytest.fixture
def lstm_lm() -> torch.nn.Module:
    return models.LSTMLanguageModel()


@pytest.fixture
def vit() -> torch.nn.Module:
    return models.TinyViT()

"""Shared fixtures and small real architectures used across the tests."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from tests import models

# The tests use small tensors, where intra-op threads only add synchronisation; on a machine
# whose cores are shared by several test runs, torch's thread pool spins against them (the
# suite took 7 minutes with 2 threads under load, 34 s with one).
torch.set_num_threads(1)


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

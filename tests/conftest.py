"""Shared fixtures and small real architectures used across the tests."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from tests import models

# The tests use small models, where a second intra-op thread gains little; on a machine whose
# two cores are shared, torch's spinning worker threads made the suite several times slower.
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

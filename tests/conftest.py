"""Shared fixtures and small real architectures used across the tests."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from tests import models


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

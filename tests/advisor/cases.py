"""Every recipe the tests make: the published setups and the rule-specific cases.

Each case is a model factory (or None) and the keyword arguments of ``optiwise.recommend``;
the build and no-contradiction tests run over all of them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from tests import models

ModelFactory = Callable[[], nn.Module]

# ImageNet: 1.28M images; 5005 steps per epoch at batch 256.
IMAGENET = 1_281_167

PUBLISHED: dict[str, tuple[ModelFactory, dict[str, Any]]] = {
    "resnet50_imagenet_b256": (
        models.TinyResNet,
        dict(batch_size=256, epochs=90, dataset_size=IMAGENET),
    ),
    "resnet50_imagenet_b64": (
        models.TinyResNet,
        dict(batch_size=64, epochs=90, dataset_size=IMAGENET),
    ),
    # A published model's size decides its LR: the recipe is made for its parameter count
    # (n_params) and built on the tiny stand-in of the same architecture.
    "bert_base_pretraining": (
        models.TinyBert,
        dict(
            family="language_transformer", n_params=110_000_000, batch_size=256, total_steps=100_000
        ),
    ),
    "vit_b16_scratch_b4096": (
        models.TinyViT,
        dict(batch_size=4096, epochs=300, dataset_size=IMAGENET),
    ),
    "vit_b16_scratch_strong_aug": (
        models.TinyViT,
        dict(batch_size=4096, epochs=300, dataset_size=IMAGENET, strong_augmentation=True),
    ),
    "bert_fine_tuning": (
        lambda: models.TinyBert(classes=2),
        dict(batch_size=32, epochs=3, dataset_size=67_349, pretrained=True),
    ),
    "dcgan_generator": (
        models.DCGANGenerator,
        dict(task="gan", batch_size=128, epochs=5, steps_per_epoch=1583),
    ),
    "dcgan_discriminator": (
        models.DCGANDiscriminator,
        dict(task="gan", batch_size=128, epochs=5, steps_per_epoch=1583),
    ),
    "ppo_policy": (models.PPOPolicy, dict(task="rl_policy", batch_size=64, total_steps=15_000)),
    "lstm_lm": (models.LSTMLanguageModel, dict(batch_size=64, epochs=40, steps_per_epoch=700)),
    "resnet50_b32k_lars": (
        models.TinyResNet,
        dict(batch_size=32_768, epochs=90, dataset_size=IMAGENET),
    ),
    "bert_b32k_lamb": (
        models.TinyBert,
        dict(
            family="language_transformer",
            n_params=110_000_000,
            batch_size=32_768,
            total_steps=15_625,
        ),
    ),
}

OTHER: dict[str, tuple[ModelFactory | None, dict[str, Any]]] = {
    "gpt_small_batch_accumulates": (models.TinyGPT, dict(batch_size=8, total_steps=5_000)),
    "gpt_low_memory": (
        models.TinyGPT,
        dict(batch_size=256, total_steps=5_000, priority="low_memory"),
    ),
    "gpt_fp16": (models.TinyGPT, dict(batch_size=256, total_steps=5_000, mixed_precision="fp16")),
    "vit_bf16": (models.TinyViT, dict(batch_size=1024, total_steps=5_000, mixed_precision="bf16")),
    "vit_fine_tuning_layer_decay": (
        models.TinyViT,
        dict(batch_size=32, epochs=10, steps_per_epoch=100, pretrained=True),
    ),
    "resnet_fast_convergence": (
        models.TinyResNet,
        dict(batch_size=128, epochs=30, steps_per_epoch=390, priority="fast_convergence"),
    ),
    "resnet_small_batch": (models.TinyResNet, dict(batch_size=8, epochs=3, steps_per_epoch=500)),
    "resnet_cifar_small_data": (
        models.TinyResNet,
        dict(batch_size=128, epochs=200, dataset_size=50_000),
    ),
    "resnet_multi_process_b2048": (
        models.TinyResNet,
        dict(batch_size=256, world_size=8, epochs=90, dataset_size=IMAGENET),
    ),
    "resnet_fine_tuning_head": (
        models.TinyResNet,
        dict(batch_size=64, epochs=10, steps_per_epoch=200, pretrained=True),
    ),
    "gpt_fine_tuning_tied_head": (
        models.TinyGPT,
        dict(batch_size=16, total_steps=2_000, pretrained=True),
    ),
    "mlp_tabular": (models.PPOPolicy, dict(batch_size=512, epochs=20, steps_per_epoch=100)),
    "gan_large_batch": (
        models.DCGANGenerator,
        dict(task="gan", batch_size=16_384, total_steps=2_000),
    ),
    "bert_memory_budget": (
        models.TinyBert,
        dict(batch_size=256, total_steps=5_000, memory_budget_gb=0.0006),
    ),
    "family_only_transformer": (
        None,
        dict(
            family="language_transformer", n_params=110_000_000, batch_size=256, total_steps=1_000
        ),
    ),
}

ALL: dict[str, tuple[ModelFactory | None, dict[str, Any]]] = {**PUBLISHED, **OTHER}

from __future__ import annotations

import pytest
import torch
from torch import nn

from optiwise import param_groups
from optiwise.params import block_structure, describe_params, is_no_decay
from tests import models


def names(groups: list[dict], *, decay: bool) -> set[str]:
    out: set[str] = set()
    for g in groups:
        if (g["weight_decay"] > 0) == decay:
            out.update(g["param_names"])
    return out


def all_params(groups: list[dict]) -> list[torch.Tensor]:
    return [p for g in groups for p in g["params"]]


def test_resnet_decays_conv_and_linear_weights_only(resnet: nn.Module) -> None:
    groups = param_groups(resnet, 5e-4)
    expected_decay = {
        n
        for n, m in resnet.named_modules()
        if isinstance(m, (nn.Conv2d, nn.Linear))
        for n in [n + ".weight"]
    }
    assert names(groups, decay=True) == expected_decay
    expected_no = {n for n, _ in resnet.named_parameters()} - expected_decay
    assert names(groups, decay=False) == expected_no
    assert "fc.bias" in expected_no and "layer1.0.bn1.weight" in expected_no
    for g in groups:
        assert g["weight_decay"] in (5e-4, 0.0)
        assert len(g["params"]) == len(g["param_names"])


def test_gpt_tied_embedding_appears_once_without_decay(gpt: nn.Module) -> None:
    groups = param_groups(gpt, 0.1)
    params = all_params(groups)
    assert len(params) == len({id(p) for p in params})
    assert len(params) == len(list(gpt.parameters()))  # named_parameters dedups tied weights
    wte = gpt.transformer["wte"].weight
    no_decay_ids = {id(p) for g in groups if g["weight_decay"] == 0 for p in g["params"]}
    assert id(wte) in no_decay_ids
    assert id(gpt.transformer["wpe"].weight) in no_decay_ids
    decay = names(groups, decay=True)
    assert decay == {
        f"transformer.h.{i}.{w}"
        for i in range(3)
        for w in ("attn.qkv.weight", "attn.proj.weight", "mlp.0.weight", "mlp.2.weight")
    }


def test_lstm_weights_decay_biases_and_embedding_do_not(lstm_lm: nn.Module) -> None:
    groups = param_groups(lstm_lm, 0.01)
    assert names(groups, decay=True) == {
        "lstm.weight_ih_l0",
        "lstm.weight_hh_l0",
        "lstm.weight_ih_l1",
        "lstm.weight_hh_l1",
        "head.weight",
    }
    assert {"embed.weight", "lstm.bias_ih_l0", "head.bias"} <= names(groups, decay=False)


def test_vit_patch_conv_decays_tokens_and_norms_do_not(vit: nn.Module) -> None:
    groups = param_groups(vit, 0.05)
    decay = names(groups, decay=True)
    no_decay = names(groups, decay=False)
    assert "patch_embed.weight" in decay
    assert "blocks.0.attn.in_proj_weight" in decay
    assert {
        "cls_token",
        "pos_embed",
        "patch_embed.bias",
        "norm.weight",
        "blocks.2.norm1.weight",
        "blocks.0.attn.in_proj_bias",
    } <= no_decay
    assert decay.isdisjoint(no_decay)


def test_decision_ignores_names() -> None:
    class Odd(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.bn_proj = nn.Linear(4, 4)  # name says "bn", it is a weight layer
            self.fc = nn.LayerNorm(4)  # name says nothing, it is a norm

    groups = param_groups(Odd(), 0.1)
    assert names(groups, decay=True) == {"bn_proj.weight"}
    assert names(groups, decay=False) == {"bn_proj.bias", "fc.weight", "fc.bias"}


def test_custom_norm_recognised_by_shape() -> None:
    class MyRMSNorm(nn.Module):
        def __init__(self, d: int) -> None:
            super().__init__()
            self.gain = nn.Parameter(torch.ones(d))

    model = nn.Sequential(nn.Linear(4, 4), MyRMSNorm(4))
    assert is_no_decay(model[1], model[1].gain)
    assert names(param_groups(model, 0.1), decay=False) == {"0.bias", "1.gain"}


def test_frozen_parameters_left_out(resnet: nn.Module) -> None:
    for p in resnet.layer1.parameters():
        p.requires_grad_(False)
    groups = param_groups(resnet, 1e-4)
    got = {n for g in groups for n in g["param_names"]}
    assert not any(n.startswith("layer1.") for n in got)
    assert len(got) == sum(p.requires_grad for p in resnet.parameters())


def test_no_decay_none_and_callable(resnet: nn.Module) -> None:
    groups = param_groups(resnet, 1e-4, no_decay=None)
    assert len(groups) == 1 and groups[0]["weight_decay"] == 1e-4
    groups = param_groups(resnet, 1e-4, no_decay=lambda m, attr, p: attr == "bias")
    assert names(groups, decay=False) == {
        n for n, _ in resnet.named_parameters() if n.endswith(".bias")
    }


def test_layer_decay_gpt(gpt: nn.Module) -> None:
    groups = param_groups(gpt, 0.1, layer_decay=0.5, lr=1.0)
    scale = {n: g["lr_scale"] for g in groups for n in g["param_names"]}
    # 3 blocks: embeddings 0.5**4, block i (1-based) 0.5**(4-i), final norm/head 1.
    assert scale["transformer.wte.weight"] == 0.5**4
    assert scale["transformer.wpe.weight"] == 0.5**4
    assert scale["transformer.h.0.attn.qkv.weight"] == 0.5**3
    assert scale["transformer.h.2.mlp.0.bias"] == 0.5**1
    assert scale["transformer.ln_f.weight"] == 1.0
    for g in groups:
        assert g["lr"] == pytest.approx(g["lr_scale"])


def test_layer_decay_resnet_stages_and_bert_layout(resnet: nn.Module) -> None:
    blocks = block_structure(resnet)
    assert blocks["conv1.weight"] is None
    assert blocks["layer1.1.conv2.weight"] == 1
    assert blocks["layer3.0.shortcut.0.weight"] == 3

    class Bert(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embeddings = nn.Embedding(10, 4)
            self.encoder = nn.Module()
            self.encoder.layer = nn.ModuleList(nn.Linear(4, 4) for _ in range(2))
            self.pooler = nn.Linear(4, 4)

    infos = {i.name: i for i in describe_params(Bert(), layer_decay=0.8)}
    assert infos["embeddings.weight"].lr_scale == pytest.approx(0.8**3)
    assert infos["encoder.layer.0.weight"].lr_scale == pytest.approx(0.8**2)
    assert infos["encoder.layer.1.weight"].lr_scale == pytest.approx(0.8)
    assert infos["pooler.weight"].lr_scale == 1.0


def test_lr_mult_longest_prefix_wins(resnet: nn.Module) -> None:
    groups = param_groups(resnet, 1e-4, lr_mult={"layer1": 0.1, "layer1.0": 0.5, "fc": 2.0}, lr=0.2)
    scale = {n: g["lr_scale"] for g in groups for n in g["param_names"]}
    assert scale["layer1.0.conv1.weight"] == 0.5
    assert scale["layer1.1.conv1.weight"] == 0.1
    assert scale["fc.weight"] == 2.0
    assert scale["conv1.weight"] == 1.0
    lr = {n: g["lr"] for g in groups for n in g["param_names"]}
    assert lr["fc.bias"] == pytest.approx(0.4)


def test_layer_decay_and_lr_mult_multiply(vit: nn.Module) -> None:
    infos = {i.name: i for i in describe_params(vit, layer_decay=0.5, lr_mult={"head": 3.0})}
    assert infos["head.weight"].lr_scale == 3.0
    assert infos["blocks.3.norm1.weight"].lr_scale == 0.5
    assert infos["cls_token"].lr_scale == 0.5**5


def test_groups_build_a_working_optimizer(gpt: nn.Module) -> None:
    opt = torch.optim.AdamW(param_groups(gpt, 0.1, layer_decay=0.9, lr=1e-3), lr=1e-3)
    idx = torch.randint(0, 50, (2, 8))
    gpt(idx).sum().backward()
    opt.step()
    assert len(opt.param_groups) >= 5


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"weight_decay": -1.0}, "Invalid weight_decay: -1.0"),
        ({"weight_decay": 0.1, "layer_decay": 1.5}, "Invalid layer_decay: 1.5"),
        ({"weight_decay": 0.1, "lr_mult": {"nope": 0.1}}, "lr_mult key 'nope'"),
        ({"weight_decay": 0.1, "lr_mult": {"fc": -1}}, "Invalid LR multiplier"),
        ({"weight_decay": 0.1, "no_decay": "names"}, "Invalid no_decay"),
    ],
)
def test_bad_input(resnet: nn.Module, kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        param_groups(resnet, **kwargs)


def test_layer_decay_needs_blocks() -> None:
    with pytest.raises(ValueError, match="numbered blocks"):
        param_groups(nn.Sequential(nn.Linear(2, 2)), 0.1, layer_decay=0.9)


def test_no_trainable_parameters() -> None:
    model = nn.Linear(2, 2).requires_grad_(False)
    with pytest.raises(ValueError, match="no trainable parameters"):
        param_groups(model, 0.1)
    with pytest.raises(ValueError, match="no trainable parameters"):
        param_groups(nn.ReLU(), 0.1)


def test_models_run() -> None:
    assert models.TinyResNet()(torch.randn(2, 1, 16, 16)).shape == (2, 10)
    assert models.TinyViT()(torch.randn(2, 3, 16, 16)).shape == (2, 10)
    assert models.LSTMLanguageModel()(torch.randint(0, 40, (2, 5))).shape == (2, 5, 40)

from __future__ import annotations

import pytest
import torch
from torch import nn

import optiwise
from optiwise import create_optimizer, get_spec, list_optimizers, resolve_optimizer
from optiwise.optim.registry import canonical_name, get_entry
from tests.optim.harness import fitting_model, fitting_step


def small() -> nn.Module:
    return nn.Sequential(nn.Linear(4, 8), nn.LayerNorm(8), nn.ReLU(), nn.Linear(8, 2))


TORCH_CLASSES = {
    "sgd": torch.optim.SGD,
    "sgd_momentum": torch.optim.SGD,
    "sgd_plain": torch.optim.SGD,
    "adam": torch.optim.Adam,
    "adamw": torch.optim.AdamW,
    "nadam": torch.optim.NAdam,
    "radam": torch.optim.RAdam,
    "adamax": torch.optim.Adamax,
    "rmsprop": torch.optim.RMSprop,
    "adagrad": torch.optim.Adagrad,
    "adafactor": torch.optim.Adafactor,
}


def test_list_includes_torch_optimizers() -> None:
    assert set(TORCH_CLASSES) <= set(list_optimizers())
    assert list_optimizers() == sorted(list_optimizers())


@pytest.mark.parametrize("name", sorted(TORCH_CLASSES))
def test_each_builds_and_steps(name: str) -> None:
    model = small()
    opt = create_optimizer(name, model)
    assert type(opt) is TORCH_CLASSES[name]
    before = [p.detach().clone() for p in model.parameters()]
    model(torch.randn(5, 4)).pow(2).mean().backward()
    opt.step()
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    spec = get_spec(opt)
    assert spec is not None and spec.name == name
    assert "lr" in spec.filled and spec.filled["lr"].reason


# torch.optim's optimizers with a requirement (knowledge extra["requires"]) or a single group
MORE_TORCH_CLASSES = {
    "adadelta": torch.optim.Adadelta,
    "asgd": torch.optim.ASGD,
    "rprop": torch.optim.Rprop,
    "lbfgs": torch.optim.LBFGS,
    "sparse_adam": torch.optim.SparseAdam,
    "muon_2d": torch.optim.Muon,
}


def test_every_torch_optimizer_is_registered() -> None:
    classes = {
        obj
        for obj in vars(torch.optim).values()
        if isinstance(obj, type) and issubclass(obj, torch.optim.Optimizer)
        and obj is not torch.optim.Optimizer
    }  # fmt: skip
    registered = {get_entry(n).factory for n in list_optimizers()}
    assert classes <= registered, classes - registered
    assert set(TORCH_CLASSES.values()) | set(MORE_TORCH_CLASSES.values()) == classes


@pytest.mark.parametrize("name", sorted(MORE_TORCH_CLASSES))
def test_each_with_a_requirement_builds_and_steps(name: str) -> None:
    model = fitting_model(name)
    opt = create_optimizer(name, model)
    assert type(opt) is MORE_TORCH_CLASSES[name]
    before = [p.detach().clone() for p in model.parameters()]
    losses = [fitting_step(name, model, opt, t=0).item() for _ in range(3)]
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    assert losses[-1] < losses[0]
    spec = get_spec(opt)
    assert spec is not None and spec.name == name and spec.filled["lr"].reason


def test_lbfgs_gets_one_group_with_the_knowledge_line_search() -> None:
    opt = create_optimizer("lbfgs", small())
    assert len(opt.param_groups) == 1 and len(opt.param_groups[0]["params"]) == 6
    assert opt.param_groups[0]["line_search_fn"] == "strong_wolfe"
    assert opt.param_groups[0]["history_size"] == 10
    with pytest.raises(ValueError, match="single param group, so layer_decay and lr_mult"):
        create_optimizer("lbfgs", small(), lr_mult={"0": 0.1})


def test_muon_2d_refuses_a_model_with_vectors() -> None:
    with pytest.raises(ValueError, match="Muon only supports 2D parameters"):
        create_optimizer("muon_2d", small())


def test_names_case_insensitive_and_aliases() -> None:
    assert canonical_name("AdamW") == "adamw"
    assert canonical_name(" ADAM-W ") == "adamw"
    assert canonical_name("Nesterov") == "sgd"
    assert canonical_name("SGD_Momentum") == "sgd_momentum"
    assert canonical_name("RMSProp") == "rmsprop"


def test_unknown_name_lists_closest() -> None:
    with pytest.raises(ValueError, match="Unknown optimizer 'adamq'; did you mean 'adam"):
        create_optimizer("adamq", small())


def test_filled_values_and_reasons() -> None:
    spec = resolve_optimizer("sgd", task="vision_cnn")
    assert dict(spec.hparams) == {
        "lr": 0.1,
        "momentum": 0.9,
        "nesterov": True,
        "weight_decay": 1e-4,
    }
    assert set(spec.filled) == set(spec.hparams)
    assert "Goyal" in spec.filled["lr"].reason
    text = spec.explain()
    assert "nesterov = True" in text and "Sutskever" in text


def test_given_values_win_and_are_recorded() -> None:
    spec = resolve_optimizer("adamw", lr=3e-4, weight_decay=0.1, betas=(0.9, 0.95))
    assert spec.hparams["lr"] == 3e-4 and spec.hparams["weight_decay"] == 0.1
    assert spec.hparams["betas"] == (0.9, 0.95)
    assert set(spec.given) == {"lr", "weight_decay", "betas"}
    assert "lr" not in spec.filled and spec.hparams["eps"] == 1e-8
    assert "lr = 0.0003  -- given" in spec.explain()


def test_extra_constructor_arguments_pass_through() -> None:
    opt = create_optimizer("adam", small(), amsgrad=True)
    assert opt.param_groups[0]["amsgrad"] is True


def test_task_defaults() -> None:
    spec = resolve_optimizer("adamw", task="language_transformer")
    assert spec.hparams["lr"] == 1e-4 and spec.hparams["eps"] == 1e-6
    spec = resolve_optimizer("adam", task="gan")
    assert spec.hparams["betas"] == (0.5, 0.999) and spec.hparams["lr"] == 2e-4


def test_batch_size_scales_the_default_lr_only() -> None:
    spec = resolve_optimizer("sgd", task="vision_cnn", batch_size=64)
    assert spec.hparams["lr"] == pytest.approx(0.025)
    assert "linear rule" in spec.filled["lr"].reason
    spec = resolve_optimizer("adamw", batch_size=1024)
    assert spec.hparams["lr"] == pytest.approx(2e-3)
    spec = resolve_optimizer("sgd", batch_size=64, lr=0.3)
    assert spec.hparams["lr"] == 0.3


def test_variants_pin_their_hyperparameters() -> None:
    assert resolve_optimizer("sgd_plain").hparams["momentum"] == 0.0
    assert resolve_optimizer("sgd_momentum").hparams["nesterov"] is False
    with pytest.raises(ValueError, match=r"fixes momentum=0\.0"):
        resolve_optimizer("sgd_plain", momentum=0.9)
    # nesterov is never filled on top of a given momentum of 0
    spec = resolve_optimizer("sgd", momentum=0.0)
    assert spec.hparams["nesterov"] is False
    create_optimizer("sgd", small(), momentum=0.0)


def test_model_gets_param_groups_by_default() -> None:
    model = small()
    opt = create_optimizer("adamw", model, weight_decay=0.05)
    wds = sorted(g["weight_decay"] for g in opt.param_groups)
    assert wds == [0.0, 0.05]
    decayed = {n for g in opt.param_groups if g["weight_decay"] for n in g["param_names"]}
    assert decayed == {"0.weight", "3.weight"}
    flat = create_optimizer("adamw", model, group=False)
    assert len(flat.param_groups) == 1


def test_layer_decay_and_lr_mult_through_registry(gpt: nn.Module) -> None:
    opt = create_optimizer("adamw", gpt, lr=1e-3, layer_decay=0.5)
    lrs = sorted({g["lr"] for g in opt.param_groups})
    assert lrs == pytest.approx([1e-3 * 0.5**k for k in (4, 3, 2, 1, 0)])
    with pytest.raises(ValueError, match="need a model"):
        create_optimizer("adamw", gpt.parameters(), layer_decay=0.5)


def test_param_list_and_groups_accepted() -> None:
    model = small()
    opt = create_optimizer("sgd", model.parameters(), lr=0.05)
    assert opt.param_groups[0]["lr"] == 0.05
    opt = create_optimizer(
        "adam", [{"params": model[0].parameters(), "lr": 1e-2}, {"params": model[3].parameters()}]
    )
    assert [g["lr"] for g in opt.param_groups] == [1e-2, 1e-3]


def test_fused_preferred_where_torch_has_it() -> None:
    opt = create_optimizer("adamw", small())
    assert opt.param_groups[0]["fused"] is True
    assert get_spec(opt).filled["fused"].value is True  # type: ignore[union-attr]
    opt = create_optimizer("adamw", small(), foreach=False)
    assert not opt.param_groups[0]["fused"]
    opt = create_optimizer("nadam", small())
    assert "fused" not in opt.param_groups[0]


def test_fused_matches_unfused() -> None:
    torch.manual_seed(1)
    a = small()
    b = small()
    b.load_state_dict(a.state_dict())
    oa = create_optimizer("adamw", a)
    ob = create_optimizer("adamw", b, foreach=False)
    x = torch.randn(16, 4)
    for _ in range(5):
        for m, o in ((a, oa), (b, ob)):
            o.zero_grad()
            m(x).pow(2).mean().backward()
            o.step()
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        torch.testing.assert_close(pa, pb, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"lr": -1.0}, r"Invalid learning rate: -1.0 \(must be a finite number > 0\)"),
        ({"lr": float("nan")}, "Invalid learning rate: nan"),
        ({"betas": (0.9, 1.0)}, r"Invalid beta parameter at index 1: 1.0 \(must be in \[0, 1\)\)"),
        ({"betas": 0.9}, "Invalid betas: 0.9"),
        ({"weight_decay": -0.1}, "Invalid weight_decay value: -0.1"),
        ({"eps": -1e-8}, "Invalid epsilon value: -1e-08"),
        ({"momentum": 1.5}, r"Invalid momentum: 1.5"),
        ({"bogus": 1}, "AdamW does not take bogus; accepted: .*amsgrad"),
    ],
)
def test_bad_hyperparameters(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        create_optimizer("adamw" if "momentum" not in kwargs else "sgd", small(), **kwargs)


def test_no_trainable_parameters() -> None:
    with pytest.raises(ValueError, match="no trainable parameters"):
        create_optimizer("adamw", small().requires_grad_(False))
    with pytest.raises(ValueError, match="no trainable parameters"):
        create_optimizer("adamw", small().requires_grad_(False), group=False)
    with pytest.raises(ValueError, match="empty parameter list"):
        create_optimizer("adamw", [])


def test_public_api() -> None:
    for name in optiwise.__all__:
        assert hasattr(optiwise, name)

"""The new rules stay quiet on the look-alikes that are correct (their bad/good examples are
in docs/lint.md and run by test_readme_rules)."""

from __future__ import annotations

from optiwise.audit.lint import lint_source


def codes(src: str) -> list[str]:
    return [f.code for f in lint_source(src)]


HEAD = "import torch\nopt = torch.optim.AdamW(groups, lr=1e-3, weight_decay=0)\n"


def test_gan_betas_are_not_extreme() -> None:
    assert codes("import torch\nopt = torch.optim.Adam(g, lr=2e-4, betas=(0.5, 0.999))\n") == []
    (f,) = lint_source("import torch\nopt = torch.optim.Adam(g, lr=2e-4, betas=(0.5, 0.5))\n")
    assert f.code == "OW106" and "about 2 steps" in f.message


def test_lr_read_from_the_scheduler_for_logging_is_fine() -> None:
    src = HEAD + (
        "sched = torch.optim.lr_scheduler.StepLR(opt, 10)\n"
        "for epoch in range(3):\n    for x in loader:\n        opt.zero_grad()\n"
        "        model(x).sum().backward()\n        opt.step()\n"
        "        lr = sched.get_last_lr()[0]\n        print(lr)\n    sched.step()\n"
    )
    assert codes(src) == []
    applied = HEAD + (
        "for it, x in enumerate(loader):\n    lr = base_lr * min(1, it / 100)\n"
        "    set_lr(opt, lr)\n    opt.zero_grad()\n    model(x).sum().backward()\n    opt.step()\n"
    )
    assert codes(applied) == []


def test_alternating_steps_and_accelerate_accumulation_are_not_accumulation_mistakes() -> None:
    gan = HEAD + (
        "for i, x in enumerate(loader):\n    opt.zero_grad()\n    d_loss(x).backward()\n"
        "    if i % 2 == 0:\n        opt.step()\n"
    )
    assert "OW505" not in codes(gan)
    acc = HEAD + (
        "for x in loader:\n    with accelerator.accumulate(model):\n"
        "        accelerator.backward(model(x).sum() / accum_steps)\n"
        "        model(x).sum().backward()\n        opt.step()\n        opt.zero_grad()\n"
    )
    assert codes(acc) == []


def test_an_optimizer_per_trial_is_not_recreated_per_epoch() -> None:
    sweep = (
        "import torch\nfor lr in (0.1, 0.01):\n"
        "    opt = torch.optim.SGD(groups, lr=lr, momentum=0.9, nesterov=True)\n"
        "    sched = torch.optim.lr_scheduler.StepLR(opt, 10)\n"
        "    for epoch in range(3):\n        for x in loader:\n            opt.zero_grad()\n"
        "            model(x).sum().backward()\n            opt.step()\n        sched.step()\n"
    )
    assert codes(sweep) == []


def test_fine_tuning_from_pretrained_weights_is_not_a_resume() -> None:
    src = HEAD + "state = torch.load('pretrained.pt')\nmodel.load_state_dict(state)\n"
    assert codes(src) == []
    resume = HEAD + "ckpt = torch.load('last.pt')\nmodel.load_state_dict(ckpt['model'])\n"
    resume += "start = ckpt['epoch']\n"
    (f,) = lint_source(resume)
    assert f.code == "OW701" and f.line == 4 and "never loads the optimizer" in f.message


def test_resume_with_an_optimizer_built_elsewhere_and_a_named_state_dict() -> None:
    src = (
        "import torch\n"
        "if args.init_from == 'resume':\n"
        "    checkpoint = torch.load('ckpt.pt')\n"
        "    state_dict = checkpoint['model']\n"
        "    model.load_state_dict(state_dict)\n"
        "optimizer = model.configure_optimizers(0.1, 6e-4)\n"
        "for x in loader:\n    optimizer.zero_grad()\n"
        "    model(x).backward()\n    optimizer.step()\n"
    )
    (f,) = lint_source(src)
    assert f.code == "OW701" and f.line == 5
    loaded = (
        src + "if args.init_from == 'resume':\n    optimizer.load_state_dict(checkpoint['opt'])\n"
    )
    assert codes(loaded) == []


def test_constant_lr_leaves_linear_models_alone() -> None:
    loop = (
        "for epoch in range(10):\n    for x, y in loader:\n        opt.zero_grad()\n"
        "        loss(model(x), y).backward()\n        opt.step()\n"
    )
    linear = "import torch\nmodel = torch.nn.Linear(4, 1)\n"
    linear += "opt = torch.optim.SGD(model.parameters(), lr=0.1)\n"
    assert codes(linear + loop) == []
    deep = linear.replace("torch.nn.Linear(4, 1)", "Net()")
    assert codes(deep + loop) == ["OW307"]


def test_a_tokenizer_is_not_a_transformer_model() -> None:
    from optiwise.audit._analysis import _hf_model_name

    assert _hf_model_name("transformers.AutoTokenizer.from_pretrained") is None
    assert _hf_model_name("transformers.BertTokenizerFast") is None
    assert _hf_model_name("transformers.AutoConfig.from_pretrained") is None
    assert _hf_model_name("transformers.BertForSequenceClassification") == (
        "BertForSequenceClassification"
    )
    assert _hf_model_name("transformers.AutoModelForCausalLM.from_pretrained") == (
        "AutoModelForCausalLM"
    )
    tok = "import torch, transformers\ntok = transformers.AutoTokenizer.from_pretrained('x')\n"
    tok += "opt = torch.optim.Adam(net.parameters(), lr=1e-3)\n"
    tok += "for epoch in range(3):\n    for x in loader:\n        opt.zero_grad()\n"
    tok += "        net(tok(x)).backward()\n        opt.step()\n"
    assert codes(tok) == []

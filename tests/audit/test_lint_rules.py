"""Every rule on the corpus: flawed scripts give exactly their findings, correct ones none."""

from __future__ import annotations

import pytest

from optiwise import knowledge
from optiwise.audit.findings import CODES, Severity
from optiwise.audit.lint import lint_source, resolve_codes
from tests.audit.corpus import CORRECT, FLAWED, Case


@pytest.mark.parametrize("case", FLAWED, ids=lambda c: c.name)
def test_flawed_scripts_give_exactly_their_findings(case: Case) -> None:
    got = [(f.code, f.line, f.col) for f in lint_source(case.source, f"{case.name}.py")]
    assert got == list(case.expected)


@pytest.mark.parametrize("case", CORRECT, ids=lambda c: c.name)
def test_correct_scripts_give_no_findings(case: Case) -> None:
    assert lint_source(case.source, f"{case.name}.py") == []


def test_corpus_covers_every_static_rule() -> None:
    covered = {code for case in FLAWED for code, _, _ in case.expected}
    static = {"OW101", "OW102", "OW201", "OW303", "OW304", "OW305", "OW401"}
    static |= {"OW501", "OW502", "OW503", "OW504", "OW601", "OW701", "OW702"}
    assert static <= covered and covered <= set(CODES)


def test_findings_carry_rule_texts_and_lint_severity() -> None:
    case = next(c for c in FLAWED if c.name == "decay_on_all_parameters")
    f = lint_source(case.source, "x.py")[0]
    assert f.severity is Severity.INFO  # the linter cannot see which parameters are norms
    assert "optiwise.param_groups" in f.fix and f.why == CODES["OW401"].why
    assert f.path == "x.py" and f.data["weight_decay"] == 0.01


def test_lr_range_follows_knowledge(monkeypatch: pytest.MonkeyPatch) -> None:
    src = "import torch\nopt = torch.optim.AdamW(groups, lr=0.02)\n"
    assert lint_source(src) == []  # 0.02 is within 3x of AdamW's 1e-2 upper bound
    monkeypatch.setattr(knowledge, "LR_OUT_OF_RANGE_FACTOR", knowledge.Fact(1.5, "test"))
    (f,) = lint_source(src)
    assert f.code == "OW201" and "1e-05..0.01" in f.message and (f.line, f.col) == (2, 36)


def test_lr_range_uses_the_create_optimizer_task() -> None:
    src = (
        "import optiwise\n"
        "a = optiwise.create_optimizer('adamw', m, lr=1e-2, task='fine_tuning')\n"
        "b = optiwise.create_optimizer('adamw', m, lr=1e-2)\n"
    )
    hi = knowledge.lr_range("adamw", "fine_tuning").value[1]
    assert hi * knowledge.LR_OUT_OF_RANGE_FACTOR.value < 1e-2
    assert [(f.code, f.line) for f in lint_source(src)] == [("OW201", 2)]


def test_onecycle_max_lr_is_checked_instead_of_the_optimizer_lr() -> None:
    src = (
        "import torch\n"
        "opt = torch.optim.Adam(groups, lr=0.5)\n"
        "s = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=1.0, total_steps=10)\n"
    )
    (f,) = lint_source(src)
    assert (f.code, f.line, f.col) == ("OW201", 3, 53) and f.message.startswith("max_lr=1 ")


def test_suppression_comments() -> None:
    src = (
        "import torch\n"
        "a = torch.optim.Adam(g, weight_decay=0.1)  # optiwise: ignore[OW101]\n"
        "b = torch.optim.Adam(g, weight_decay=0.1)  # optiwise: ignore[OW102, OW201]\n"
        "c = torch.optim.Adam(g, weight_decay=0.1)  # optiwise: ignore\n"
        "d = torch.optim.Adam(  # optiwise: ignore[OW101]\n"
        "    g, weight_decay=0.1)\n"
        "e = '# optiwise: ignore[OW101]'; f = torch.optim.Adam(g, weight_decay=0.1)\n"
    )
    assert [(f.code, f.line) for f in lint_source(src)] == [("OW101", 3), ("OW101", 7)]


def test_select_and_ignore() -> None:
    case = next(c for c in FLAWED if c.name == "fp16_eps")
    assert lint_source(case.source, select=["OW1", "OW2"]) == []
    assert len(lint_source(case.source, select=["OW6"])) == 2
    assert lint_source(case.source, ignore=["ow601"]) == []
    assert resolve_codes(["OW5"], ["OW503"]) == {f"OW50{i}" for i in (1, 2, 4, 5, 6, 7, 8)}
    with pytest.raises(ValueError, match="Unknown finding code 'OW8'"):
        resolve_codes(["OW8"])


def test_syntax_error_is_a_finding() -> None:
    (f,) = lint_source("import torch\nx = (\n", "bad.py")
    assert f.code == "OW900" and f.path == "bad.py" and "syntax error" in f.message
    assert f.line == 2


def test_columns_count_characters_not_bytes() -> None:
    src = "import torch\nα = 'é'; opt = torch.optim.Adam(g, weight_decay=0.1)\n"
    (f,) = lint_source(src)
    assert (f.line, f.col) == (2, 16)


def test_local_function_returning_an_optimizer_and_annotations() -> None:
    src = (
        "import torch\n"
        "from torch.optim import Optimizer\n"
        "def make(model):\n"
        "    return torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0)\n"
        "opt = make(model)\n"
        "for x in loader:\n"
        "    model(x).sum().backward()\n"
        "    opt.step()\n"
        "def loop(o: Optimizer, s: torch.optim.lr_scheduler.ReduceLROnPlateau):\n"
        "    s.step()\n"
    )
    assert [(f.code, f.line, f.col) for f in lint_source(src)] == [
        ("OW501", 8, 5),
        ("OW305", 10, 5),
    ]


LOOP = """
for epoch in range(10):
    for x in loader:
        opt.zero_grad()
        model(x).sum().backward()
        opt.step()
"""


def test_transformer_without_warmup_needs_an_adaptive_optimizer_and_no_warmup() -> None:
    hf = "import transformers\nmodel = transformers.AutoModelForCausalLM.from_pretrained('gpt2')\n"
    bad = hf + "import torch\nopt = torch.optim.AdamW(model.parameters(), weight_decay=0)\n"
    assert [f.code for f in lint_source(bad + LOOP)] == ["OW301"]
    warm = bad + "warmup_steps = 100\n"  # a warmup the linter cannot follow: no finding
    assert lint_source(warm + LOOP) == []
    lam = bad + "s = torch.optim.lr_scheduler.LambdaLR(opt, f)\n"
    assert lint_source(lam + LOOP) == []
    cnn = (
        "import torch\nmodel = Net()\nopt = torch.optim.AdamW(model.parameters(), weight_decay=0)\n"
    )
    assert lint_source(cnn + LOOP) == []


def test_constant_lr_only_for_a_single_sgd_over_known_epochs() -> None:
    sgd = "import torch\nopt = torch.optim.SGD(g, lr=0.1, momentum=0.9, nesterov=True)\n"
    (f,) = lint_source(sgd + LOOP)
    assert f.code == "OW307" and "range(10)" in f.message and f.severity is Severity.MEDIUM
    gan = sgd + "opt_d = torch.optim.SGD(h, lr=0.1, momentum=0.9, nesterov=True)\n"
    assert lint_source(gan + LOOP + LOOP.replace("opt", "opt_d")) == []
    manual = sgd + "for g in opt.param_groups:\n    g['lr'] = 0.01\n"
    assert lint_source(manual + LOOP) == []
    flat = sgd + "for x in loader:\n    opt.zero_grad()\n    loss(x).backward()\n    opt.step()\n"
    assert lint_source(flat) == []  # length unknown


def test_lr_range_accepts_the_task_words_create_optimizer_accepts() -> None:
    src = (
        "import optiwise\n"
        "a = optiwise.create_optimizer('adam', m, lr=1e-2, task='PPO')\n"
        "b = optiwise.create_optimizer('adam', m, lr=1e-2, task='not-a-task')\n"
    )
    hi = knowledge.lr_range("adam", "rl_policy").value[1]
    assert hi * knowledge.LR_OUT_OF_RANGE_FACTOR.value < 1e-2
    assert [(f.code, f.line) for f in lint_source(src)] == [("OW201", 2)]

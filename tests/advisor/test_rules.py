from __future__ import annotations

from optiwise import knowledge
from optiwise.advisor.rules import (
    RULES,
    Choice,
    Draft,
    Rule,
    Setup,
    apply_rules,
    memory_bytes,
    optimizer_steps,
    warmup_steps,
)
from optiwise.knowledge import Fact
from tests.advisor.cases import ALL
from tests.advisor.test_recipe import make


def _setup(**kw: object) -> Setup:
    base: dict[str, object] = dict(
        family="vision_cnn",
        family_evidence=("given",),
        profile=None,
        n_params=None,
        task=None,
        batch_size=256,
        total_steps=1000,
    )
    base.update(kw)
    return Setup(**base)  # type: ignore[arg-type]


def test_rules_are_data_with_reason_and_source() -> None:
    names = [r.name for r in RULES]
    assert len(names) == len(set(names))
    for r in RULES:
        assert callable(r.condition) and callable(r.action)
        assert r.reason and r.source


def test_every_choice_names_a_rule_and_a_reason() -> None:
    names = {r.name for r in RULES}
    for case in ALL:
        _, recipe = make(case)
        for key, choice in recipe.choices.items():
            assert choice.key == key and choice.rule in names and choice.reason, (case, key)


def test_later_rules_override_and_facts_add_their_reason() -> None:
    rules = (
        Rule("a", lambda s, d: True, lambda s, d: {"x": 1}, "first", "src-a"),
        Rule("b", lambda s, d: d["x"] == 1, lambda s, d: {"x": Fact(2, "why 2")}, "second", "b"),
        Rule("c", lambda s, d: False, lambda s, d: {"x": 3}, "never", "c"),
    )
    draft = apply_rules(_setup(), rules)
    assert draft["x"] == 2
    assert draft.choice("x") == Choice("x", 2, "b", "second: why 2", "b")


def test_draft_drop_and_get() -> None:
    draft = Draft()
    draft.set(Choice("optimizer", "sgd", "r", "why", "s"))
    draft.set(Choice("optimizer.lr", 0.1, "r", "why", "s"))
    draft.drop("optimizer.")
    assert list(draft) == ["optimizer"] and draft.get("optimizer.lr", 7) == 7


def test_default_rules_on_a_bare_setup() -> None:
    draft = apply_rules(_setup())
    assert draft["optimizer"] == "sgd" and draft["optimizer.lr"] == 0.1
    assert draft["schedule.warmup"] == 50  # 5% of 1000 steps


def test_run_length_and_warmup_helpers() -> None:
    assert optimizer_steps(_setup(total_steps=None, epochs=3, steps_per_epoch=10), 4) == 8
    assert optimizer_steps(_setup(total_steps=None, epochs=1, dataset_size=1000), 1) == 4
    assert optimizer_steps(_setup(total_steps=None, epochs=1), 1) is None
    assert warmup_steps("language_transformer", 50_000) == 5_000
    assert warmup_steps("language_transformer", 2_000_000) == 10_000
    assert warmup_steps("rnn", 1000) == 0
    assert warmup_steps("vision_cnn", 10) == 1  # a warmup never rounds away
    assert warmup_steps("vision_cnn", None) is None


def test_memory_bytes_uses_knowledge_state_bytes() -> None:
    n = 1_000_000
    assert memory_bytes(n, "adamw") == n * (8 + knowledge.get_info("adamw").state_bytes.value)
    assert memory_bytes(n, "sgd") == 12 * n

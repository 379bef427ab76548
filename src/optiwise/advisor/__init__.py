"""The advisor: from a model and a training setup to an explained, buildable recipe."""

from optiwise.advisor.inspect import FAMILIES, ModelProfile, inspect_model
from optiwise.advisor.recipe import Recipe, recommend
from optiwise.advisor.rules import RULES, Choice, Rule

__all__ = [
    "FAMILIES",
    "RULES",
    "Choice",
    "ModelProfile",
    "Recipe",
    "Rule",
    "inspect_model",
    "recommend",
]

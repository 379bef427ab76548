"""Budgeted LR tuning by short trials that mirror the planned run (:func:`tune`)."""

import sys as _sys
import types as _types
from typing import Any as _Any

from optiwise.tune.search import HorizonFit, Trial, TuneResult, plan_rungs, trial_warmup, tune

__all__ = ["HorizonFit", "Trial", "TuneResult", "plan_rungs", "trial_warmup", "tune"]


class _CallableModule(_types.ModuleType):
    """``optiwise.tune`` names this package and the function alike (the package is imported
    lazily by ``optiwise``): calling the package calls :func:`tune`."""

    def __call__(self, *args: _Any, **kwargs: _Any) -> _Any:
        return tune(*args, **kwargs)


_sys.modules[__name__].__class__ = _CallableModule

"""Budgeted LR tuning by short trials that mirror the planned run (:func:`tune`)."""

from optiwise.tune.search import HorizonFit, Trial, TuneResult, plan_rungs, trial_warmup, tune

__all__ = ["HorizonFit", "Trial", "TuneResult", "plan_rungs", "trial_warmup", "tune"]

"""A fair optimizer benchmark on real offline workloads.

``run_sweep(SweepConfig(...), open_store(url))`` tunes each optimizer's LR, re-runs the best
over seeds and records everything in a resumable store; ``write_report`` turns sweeps into a
folder with ``index.md``, plots and a CSV of all runs.  See docs/benchmark.md.
``run_demo(DemoConfig())`` and ``write_demo_report`` are ``optiwise demo``: a recipe against
two naive setups (docs/demo.md). Importing it registers the workloads with real
data as LR range test data sources (``optiwise find-lr --data fmnist-cnn``;
:func:`workload_source`).
"""

from optiwise.bench.data import DataUnavailableError, data_sources
from optiwise.bench.demo import DemoConfig, DemoResult, run_demo, write_demo_report
from optiwise.bench.lr_data import workload_source
from optiwise.bench.protocol import (
    OptimizerResult,
    RunResult,
    SweepConfig,
    SweepResult,
    load_sweep,
    run_sweep,
    train_problem,
    train_run,
)
from optiwise.bench.report import write_report
from optiwise.bench.scoring import (
    OptimizerScore,
    performance_profile,
    profile_area,
    ratios_to_best,
    score_sweep,
)
from optiwise.bench.store import DEFAULT_STORAGE, RunRecord, StorageError, Store, open_store
from optiwise.bench.workloads import WORKLOADS, Target, Workload, get_workload, list_workloads

__all__ = [
    "DEFAULT_STORAGE",
    "WORKLOADS",
    "DataUnavailableError",
    "DemoConfig",
    "DemoResult",
    "OptimizerResult",
    "OptimizerScore",
    "RunRecord",
    "RunResult",
    "StorageError",
    "Store",
    "SweepConfig",
    "SweepResult",
    "Target",
    "Workload",
    "data_sources",
    "get_workload",
    "list_workloads",
    "load_sweep",
    "open_store",
    "performance_profile",
    "profile_area",
    "ratios_to_best",
    "run_demo",
    "run_sweep",
    "score_sweep",
    "train_problem",
    "train_run",
    "workload_source",
    "write_demo_report",
    "write_report",
]

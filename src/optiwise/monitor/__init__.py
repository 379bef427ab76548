"""Record a training run and say what is wrong with it.

:class:`Monitor` records, step by step, what the optimizer does (loss, LR, gradient norms,
update ratios, non-finite gradients, the fp16 loss scale, validation metrics) into memory, a
CSV, TensorBoard and a plot page. :func:`diagnose` turns a record (live, a CSV or a
TensorBoard folder) into :class:`~optiwise.Finding` objects, each with a ``cause`` from
:data:`CAUSES`, in the order to fix them.
"""

from optiwise.monitor.callbacks import hf_callback, lightning_callback
from optiwise.monitor.diagnose import CAUSES, Cause, diagnose, diagnose_log
from optiwise.monitor.log import RunLog, load_log
from optiwise.monitor.plot import plot_log
from optiwise.monitor.record import Monitor

__all__ = [
    "CAUSES",
    "Cause",
    "Monitor",
    "RunLog",
    "diagnose",
    "diagnose_log",
    "hf_callback",
    "lightning_callback",
    "load_log",
    "plot_log",
]

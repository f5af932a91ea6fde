"""Many exposures at once: ``romancal-lite batch`` on Dask distributed.

See `romancal_lite.batch.runner` (the graph, the cluster, the loop), ``_tasks`` (what
the workers run), ``_ledger`` (the run ledger) and ``_report`` (summary and HTML), and
``docs/batch.md``.
"""

from ._ledger import LEDGER_NAME, Ledger
from ._plan import Group, Member, expand_inputs
from .runner import BatchOptions, default_workers, parse_batch_args, run_batch

__all__ = [
    "LEDGER_NAME",
    "BatchOptions",
    "Group",
    "Ledger",
    "Member",
    "default_workers",
    "expand_inputs",
    "parse_batch_args",
    "run_batch",
]

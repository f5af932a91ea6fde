"""Where a batch's workers spent its wall time: a timeline per worker from the ledger.

Every task records when it started (``started_unix``), how long it ran (``time_s``)
and on which worker; the run records the moments of its phases (``phases``: the
process's start, the plan, the cluster ready, the tasks submitted, the last task
finished, the end). From them, per worker: its tasks as intervals, the time before its
first task (the start: the interpreter, the plan, the cluster), the gaps between tasks
and the time after its last task (the tail). The sum of the idle time of all workers
is the capacity the run did not use; with one worker per core it is, in core-seconds,
what kept the scaling below linear.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["Timeline", "WorkerLine", "timeline"]


@dataclass
class WorkerLine:
    """One worker's tasks and idle time over a run (seconds from the run's start)."""

    worker: str
    tasks: list[tuple[float, float, str]] = field(default_factory=list)
    head: float = 0.0
    gaps: float = 0.0
    tail: float = 0.0

    @property
    def busy(self) -> float:
        """Seconds running tasks."""
        return sum(end - start for start, end, _ in self.tasks)

    @property
    def idle(self) -> float:
        """Seconds not running a task: start, gaps between tasks and tail."""
        return self.head + self.gaps + self.tail


@dataclass
class Timeline:
    """A run's timeline: its phases and one line per worker."""

    wall: float
    phases: dict[str, float]
    workers: list[WorkerLine]

    @property
    def idle(self) -> float:
        """Worker-seconds with no task (all workers)."""
        return sum(w.idle for w in self.workers)

    def table(self) -> str:
        """Return the timeline as text: phases, one row per worker, and a bar chart."""
        lines = ["phases (s from the process's start): " + ", ".join(
            f"{name} {t:.1f}" for name, t in self.phases.items())]
        lines.append(f"{'worker':<24} {'tasks':>5} {'busy s':>7} {'start s':>7} "
                     f"{'gaps s':>7} {'tail s':>7}")
        for w in self.workers:
            lines.append(f"{w.worker:<24} {len(w.tasks):>5} {w.busy:>7.1f} {w.head:>7.1f} "
                         f"{w.gaps:>7.1f} {w.tail:>7.1f}")
        lines.append(f"idle worker-seconds: {self.idle:.1f} of {self.wall * len(self.workers):.1f}"
                     f" (wall {self.wall:.1f} s x {len(self.workers)} workers)")
        width = 72
        scale = width / self.wall if self.wall > 0 else 0.0
        for w in self.workers:
            row = [" "] * width
            for start, end, name in w.tasks:
                mark = name[:1].upper() if name else "#"
                for i in range(int(start * scale), min(width, max(int(end * scale),
                                                                  int(start * scale) + 1))):
                    row[i] = mark
            lines.append(f"{w.worker[-24:]:<24} |{''.join(row)}|")
        lines.append(f"{'':<24}  0 s{'':>{width - 10}}{self.wall:5.0f} s  (E elp, C calibrate, "
                     "A align, W write, M mosaic)")
        return "\n".join(lines)


def timeline(data: dict[str, Any], run: int = -1) -> Timeline:
    """Build the timeline of one run of a ledger.

    Parameters
    ----------
    data : dict
        The ledger's content (`Ledger.data`, or the JSON file read).
    run : int, optional
        Which run (default the last).

    Returns
    -------
    Timeline
        Times in seconds from the run's process start (or, for a ledger without
        phases, from its first task's start).

    Raises
    ------
    ValueError
        If the run recorded no task times.
    """
    record = data["runs"][run]
    phases = dict(record.get("phases") or {})
    tasks = [
        (t["started_unix"], t["started_unix"] + t["time_s"], t.get("kind") or "", t["worker"])
        for t in data["tasks"].values()
        if t.get("started_unix") and t.get("time_s") is not None and t.get("worker")
    ]
    origin = phases.get("process_start", min((t[0] for t in tasks), default=None))
    end = phases.get("end", max((t[1] for t in tasks), default=None))
    if origin is None or end is None:
        raise ValueError("the run recorded no task times")
    tasks = [t for t in tasks if origin <= t[0] <= end]  # this run's (not a resumed one's)
    if not tasks:
        raise ValueError("the run recorded no task times")
    wall = end - origin
    lines: dict[str, WorkerLine] = {w: WorkerLine(w) for w in record.get("workers") or []}
    for start, stop, kind, worker in sorted(tasks):
        line = lines.setdefault(worker, WorkerLine(worker))
        line.tasks.append((start - origin, stop - origin, kind))
    for line in lines.values():
        if not line.tasks:
            line.head = wall
            continue
        line.head = line.tasks[0][0]
        line.tail = max(0.0, wall - line.tasks[-1][1])
        line.gaps = sum(max(0.0, nxt[0] - prev[1])
                        for prev, nxt in zip(line.tasks, line.tasks[1:], strict=False))
    return Timeline(wall, {k: v - origin for k, v in phases.items()},
                    sorted(lines.values(), key=lambda w: w.worker))

"""The run ledger: ``<output dir>/batch_ledger.json``, one record per task.

Only the batch's client process writes it, atomically (a temporary file and a rename),
after every change: a run stopped at any point (Ctrl-C, a killed process, a lost
machine) leaves the last complete ledger, which ``--resume`` reads.

A record holds the task's kind, inputs, status (``pending``, ``done``, ``partial``,
``failed``, ``skipped``, ``interrupted``), attempts, time, peak memory, worker,
outputs (path, size, modification time), metrics and error message. A task counts as
finished for ``--resume`` when its status is ``done`` and every output it recorded is
still there with the size and time recorded.
"""

from __future__ import annotations

import datetime
import json
import os
from pathlib import Path
from typing import Any

from romancal_lite.errors import ConfigError, InputFileError

__all__ = ["LEDGER_NAME", "Ledger"]

LEDGER_NAME = "batch_ledger.json"
_VERSION = 1


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Ledger:
    """The ledger of a batch run in an output directory.

    Parameters
    ----------
    directory : str or path-like
        The output directory.
    """

    def __init__(self, directory: str | os.PathLike[str]):
        self.path = Path(directory) / LEDGER_NAME
        self.data: dict[str, Any] = {"version": _VERSION, "runs": [], "tasks": {}}

    @property
    def tasks(self) -> dict[str, dict[str, Any]]:
        """Task id -> record."""
        return self.data["tasks"]

    def exists(self) -> bool:
        """Return whether a ledger file is there."""
        return self.path.is_file()

    def load(self) -> None:
        """Read the ledger file.

        Raises
        ------
        InputFileError
            If it is not a ledger of this version.
        """
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError) as exc:
            raise InputFileError(f"{self.path}: not a readable batch ledger ({exc})") from None
        if not isinstance(data, dict) or data.get("version") != _VERSION or not isinstance(
            data.get("tasks"), dict
        ):
            raise InputFileError(f"{self.path}: not a batch ledger of version {_VERSION}")
        self.data = data

    def save(self) -> None:
        """Write the ledger atomically."""
        from romancal_lite.datamodels._files import atomic_write

        self.data["updated"] = _now()
        text = json.dumps(self.data, indent=1, sort_keys=False, default=str).encode()
        atomic_write(self.path, lambda fh: fh.write(text), defer=False)

    def start_run(self, command: list[str], settings: dict[str, Any], resume: bool) -> None:
        """Record a new run; on ``resume`` check that its settings are the ledger's.

        Parameters
        ----------
        command : list of str
            The command line.
        settings : dict
            What decides the outputs (pipeline parameters, configuration files).
        resume : bool
            Whether this run resumes the ledger's.

        Raises
        ------
        ConfigError
            If resuming with other settings than the ledger's.
        """
        if resume and self.data.get("settings") not in (None, settings):
            raise ConfigError(
                f"{self.path}: --resume with other parameters than the ledger's run "
                f"({self.data.get('settings')}); use --force to redo everything"
            )
        self.data["settings"] = settings
        self.data["runs"].append({"started": _now(), "command": command})

    def complete(self, task_id: str, paths: set[str] | None = None) -> bool:
        """Return whether a task finished and its outputs are still as it wrote them.

        Parameters
        ----------
        task_id : str
            The task.
        paths : set of str, optional
            Check only these of its outputs (the others are no longer needed).

        Returns
        -------
        bool
            True if ``done`` and every recorded output (of ``paths``) has its recorded
            size and time.
        """
        record = self.tasks.get(task_id)
        if not record or record.get("status") != "done":
            return False
        outputs = record.get("outputs", [])
        if paths is not None:
            outputs = [o for o in outputs if o["path"] in paths]
            if {o["path"] for o in outputs} != set(paths):
                return False
        for output in outputs:
            try:
                st = os.stat(output["path"])
            except OSError:
                return False
            if st.st_size != output.get("size") or st.st_mtime_ns != output.get("mtime_ns"):
                return False
        return True

    def set(self, task_id: str, **fields: Any) -> dict[str, Any]:
        """Create or update a task's record (not saved: call `save`).

        Parameters
        ----------
        task_id : str
            The task.
        **fields
            Fields to set.

        Returns
        -------
        dict
            The record.
        """
        record = self.tasks.setdefault(task_id, {})
        record.update(fields)
        record["updated"] = _now()
        return record

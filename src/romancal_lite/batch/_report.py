"""The end of a batch: the summary table (text) and ``report.html``."""

from __future__ import annotations

import html
import os
from pathlib import Path
from typing import Any

__all__ = ["REPORT_NAME", "exposure_rows", "summary_table", "write_report"]

REPORT_NAME = "report.html"


def _fmt(value: Any, spec: str) -> str:
    if value is None:
        width = "".join(c for c in spec.split(".")[0] if c.isdigit())
        return "-".rjust(int(width)) if width else "-"
    try:
        return format(value, spec)
    except (TypeError, ValueError):
        return str(value)


def exposure_rows(ledger: Any) -> list[dict[str, Any]]:
    """Return one row per exposure-detector: its own task's record merged with its alignment.

    Parameters
    ----------
    ledger : Ledger
        The run's ledger.

    Returns
    -------
    list of dict
        ``name``, ``status``, ``time_s``, ``peak_memory_mb``, ``sky``, ``jump_fraction``,
        ``sources``, ``tweakreg_rms_mas``, ``thumbnail``, ``error``, in ledger order.
    """
    rows = []
    for task_id, record in ledger.tasks.items():
        if record.get("kind") not in {"elp", "calibrate"}:
            continue
        metrics = dict(record.get("metrics") or {})
        status = record.get("status")
        error = record.get("error")
        time_s, peak = record.get("time_s"), record.get("peak_memory_mb")
        align = ledger.tasks.get(record.get("align") or "")
        if align is not None:
            metrics.update((align.get("metrics") or {}).get("members", {}).get(
                record["name"], {}))
            if status == "done" and align.get("status") not in {"done", "partial"}:
                status = align.get("status") or "pending"
                error = error or align.get("error")
        write = ledger.tasks.get(record.get("write") or "")
        if write is not None and status == "done":
            # the member's own time: calibrating it and writing its products
            if write.get("status") != "done":
                status, error = write.get("status") or "pending", write.get("error")
            if time_s is not None and write.get("time_s") is not None:
                time_s += write["time_s"]
            peak = max((p for p in (peak, write.get("peak_memory_mb")) if p is not None),
                       default=None)
        rows.append({
            "task": task_id, "name": record["name"], "status": status,
            "time_s": time_s, "peak_memory_mb": peak, "error": error, **metrics,
        })  # fmt: skip
    return rows


def _mosaic_rows(ledger: Any) -> list[dict[str, Any]]:
    return [
        {"task": tid, "name": r.get("name"), "status": r.get("status"),
         "time_s": r.get("time_s"), "peak_memory_mb": r.get("peak_memory_mb"),
         "error": r.get("error"), **(r.get("metrics") or {})}
        for tid, r in ledger.tasks.items() if r.get("kind") == "mosaic"
    ]  # fmt: skip


def summary_table(ledger: Any, wall_s: float | None = None) -> str:
    """Return the text summary printed at the end of a batch.

    Parameters
    ----------
    ledger : Ledger
        The run's ledger.
    wall_s : float, optional
        The run's wall time.

    Returns
    -------
    str
        One line per exposure-detector and mosaic, then the counts.
    """
    rows = exposure_rows(ledger)
    width = max([len(r["name"]) for r in rows] + [8])
    lines = [
        f"{'exposure':<{width}}  {'status':<11} {'time s':>7} {'peak MB':>8} {'sky':>8} "
        f"{'jumps %':>7} {'sources':>7} {'rms mas':>7}  error"
    ]
    for r in rows:
        jumps = None if r.get("jump_fraction") is None else 100.0 * r["jump_fraction"]
        lines.append(
            f"{r['name']:<{width}}  {r['status'] or '-':<11} {_fmt(r['time_s'], '7.1f')} "
            f"{_fmt(r['peak_memory_mb'], '8.0f')} {_fmt(r.get('sky'), '8.3f')} "
            f"{_fmt(jumps, '7.3f')} {_fmt(r.get('sources'), '7d')} "
            f"{_fmt(r.get('tweakreg_rms_mas'), '7.2f')}  {r['error'] or ''}".rstrip()
        )
    for r in _mosaic_rows(ledger):
        lines.append(
            f"{'mosaic ' + str(r['name']):<{width}}  {r['status'] or '-':<11} "
            f"{_fmt(r['time_s'], '7.1f')} {_fmt(r['peak_memory_mb'], '8.0f')} "
            f"{'':>8} {'':>7} {_fmt(r.get('sources'), '7d')} {'':>7}  {r['error'] or ''}"
            .rstrip()
        )
    counts: dict[str, int] = {}
    for r in rows:
        counts[str(r["status"])] = counts.get(str(r["status"]), 0) + 1
    tail = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
    wall = f" in {wall_s:.1f} s" if wall_s is not None else ""
    lines.append(f"{len(rows)} exposure-detectors{wall}: {tail}")
    return "\n".join(lines)


_STYLE = """
body{font-family:sans-serif;margin:1.5em;color:#222}
table{border-collapse:collapse;margin-bottom:2em}
th,td{border:1px solid #ccc;padding:4px 8px;text-align:right;vertical-align:middle}
td.l,th.l{text-align:left}
tr.done td.s{background:#d8f5d8} tr.partial td.s{background:#f5f0c8}
tr.failed td.s{background:#f7d0d0}
tr.skipped td.s,tr.interrupted td.s,tr.pending td.s{background:#eee}
img{width:128px;height:auto;image-rendering:pixelated}
"""


def write_report(ledger: Any, path: str | os.PathLike[str], title: str = "batch") -> Path:
    """Write ``report.html``: a table per exposure-detector and per mosaic.

    Thumbnails are linked relative to the report (they live in its directory tree).

    Parameters
    ----------
    ledger : Ledger
        The run's ledger.
    path : str or path-like
        The report file.
    title : str, optional
        Page title.

    Returns
    -------
    pathlib.Path
        ``path``.
    """
    from romancal_lite.datamodels._files import atomic_write

    path = Path(path)
    esc = html.escape

    def thumb(value: Any) -> str:
        if not value or not os.path.isfile(value):
            return "-"
        rel = os.path.relpath(value, path.parent)
        return f'<img src="{esc(rel)}" alt="{esc(os.path.basename(value))}">'

    rows = exposure_rows(ledger)
    counts: dict[str, int] = {}
    for r in rows:
        counts[str(r["status"])] = counts.get(str(r["status"]), 0) + 1
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'>",
        f"<title>romancal-lite {esc(title)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>romancal-lite batch report</h1><p id='counts'>{len(rows)} exposure-detectors: "
        + esc(", ".join(f"{n} {s}" for s, n in sorted(counts.items()))) + "</p>",
        "<h2>Exposure-detectors</h2><table id='exposures'><tr><th class='l'>exposure</th>"
        "<th>status</th><th>time (s)</th><th>peak memory (MB)</th><th>sky (DN/s)</th>"
        "<th>jump pixels (%)</th><th>sources</th><th>tweakreg rms (mas)</th>"
        "<th>preview</th><th class='l'>error</th></tr>",
    ]
    for r in rows:
        jumps = None if r.get("jump_fraction") is None else 100.0 * r["jump_fraction"]
        parts.append(
            f"<tr class='{esc(str(r['status']))}'><td class='l'>{esc(r['name'])}</td>"
            f"<td class='s'>{esc(str(r['status']))}</td><td>{_fmt(r['time_s'], '.1f')}</td>"
            f"<td>{_fmt(r['peak_memory_mb'], '.0f')}</td><td>{_fmt(r.get('sky'), '.4g')}</td>"
            f"<td>{_fmt(jumps, '.3f')}</td><td>{_fmt(r.get('sources'), 'd')}</td>"
            f"<td>{_fmt(r.get('tweakreg_rms_mas'), '.2f')}</td><td>{thumb(r.get('thumbnail'))}"
            f"</td><td class='l'>{esc(r['error'] or '')}</td></tr>"
        )
    parts.append("</table>")
    mosaics = _mosaic_rows(ledger)
    if mosaics:
        parts.append(
            "<h2>Mosaics</h2><table id='mosaics'><tr><th class='l'>product</th><th>status</th>"
            "<th>time (s)</th><th>peak memory (MB)</th><th>inputs</th><th>sources</th>"
            "<th>preview</th><th class='l'>error</th></tr>"
        )
        for r in mosaics:
            parts.append(
                f"<tr class='{esc(str(r['status']))}'><td class='l'>{esc(str(r['name']))}</td>"
                f"<td class='s'>{esc(str(r['status']))}</td><td>{_fmt(r['time_s'], '.1f')}</td>"
                f"<td>{_fmt(r['peak_memory_mb'], '.0f')}</td><td>{_fmt(r.get('inputs'), 'd')}"
                f"</td><td>{_fmt(r.get('sources'), 'd')}</td><td>{thumb(r.get('thumbnail'))}"
                f"</td><td class='l'>{esc(r['error'] or '')}</td></tr>"
            )
        parts.append("</table>")
    parts.append(f"<p>Ledger: {esc(ledger.path.name)}</p></body></html>")
    text = "\n".join(parts).encode()
    return atomic_write(path, lambda fh: fh.write(text), defer=False)

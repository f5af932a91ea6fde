"""Compare the products of two runs: every array bit for bit, every metadata value equal.

Only what records *when* a file was written may differ (``file_date``, the catalog's
``date``) and the ASDF ``history`` (the list of extensions, in the order the process
happened to load them).
"""

from __future__ import annotations

import math
from pathlib import Path

import asdf
import numpy as np
import pyarrow.parquet as pq

from romancal_lite.datamodels import get_extension

#: Keys whose value is the time of writing.
TIME_KEYS = {"file_date", "date"}


def _walk(a, b, path, out):
    if hasattr(a, "items") and hasattr(b, "items"):
        ka, kb = set(a.keys()), set(b.keys())
        if ka != kb:
            out.append(f"{path}: keys {sorted(map(str, ka ^ kb))}")
        for key in ka & kb:
            if key in TIME_KEYS or (path == "" and key == "history"):
                continue
            _walk(a[key], b[key], f"{path}/{key}", out)
    elif isinstance(a, list | tuple) and isinstance(b, list | tuple):
        if len(a) != len(b):
            out.append(f"{path}: length {len(a)} != {len(b)}")
        for i, (x, y) in enumerate(zip(a, b, strict=False)):
            _walk(x, y, f"{path}[{i}]", out)
    elif hasattr(a, "dtype") and hasattr(a, "shape"):
        x, y = np.asarray(a), np.asarray(b)
        if x.dtype != y.dtype or x.shape != y.shape or x.tobytes() != y.tobytes():
            out.append(f"{path}: arrays differ")
    elif type(a).__name__ in {"WCS", "Table"} or hasattr(a, "__dict__") and not isinstance(
        a, str | int | float
    ):
        ta, tb = asdf.AsdfFile({"x": a}), asdf.AsdfFile({"x": b})
        if _yaml(ta) != _yaml(tb):
            out.append(f"{path}: {type(a).__name__} differs")
    elif isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        pass
    elif a != b:
        out.append(f"{path}: {a!r} != {b!r}")


def _yaml(af):
    import io

    buf = io.BytesIO()
    af.write_to(buf)
    text = buf.getvalue()
    return text[text.index(b"\nx:"):]


def differences(first: Path, second: Path) -> list[str]:
    """Return how two product files differ (empty: the same up to write times)."""
    out: list[str] = []
    if first.suffix == ".parquet":
        a, b = pq.read_table(first), pq.read_table(second)
        if a.schema.remove_metadata() != b.schema.remove_metadata():
            out.append("parquet schema")
        for name in a.column_names:
            x, y = a[name].to_numpy(zero_copy_only=False), b[name].to_numpy(zero_copy_only=False)
            if x.tobytes() != y.tobytes():
                out.append(f"parquet column {name}")
        ma, mb = dict(a.schema.metadata), dict(b.schema.metadata)
        for key in set(ma) | set(mb):
            if key.endswith(b"date") or key == b"table_meta_yaml":
                continue
            if ma.get(key) != mb.get(key):
                out.append(f"parquet metadata {key!r}: {ma.get(key)!r} != {mb.get(key)!r}")
        ya = b"\n".join(x for x in ma[b"table_meta_yaml"].split(b"\n") if b"date:" not in x)
        yb = b"\n".join(x for x in mb[b"table_meta_yaml"].split(b"\n") if b"date:" not in x)
        if ya != yb:
            out.append("parquet table_meta_yaml")
        return out
    ext = [get_extension()]
    with asdf.open(first, extensions=ext) as a, asdf.open(second, extensions=ext) as b:
        _walk(a.tree, b.tree, "", out)
    return out

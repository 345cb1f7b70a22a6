"""Cases and records as JSON: exact round trips, non-finite floats spelled out, a crash-safe stream.

``case_to_json`` / ``case_from_json`` hold a case exactly (float32 and float64
values round-trip). A *record* is one judged case (``bpcheck.run.engine``); records
are JSON lines in ``cases.jsonl``, appended and flushed one by one, so a run
killed at any moment keeps every finished line: ``load_records`` skips a torn
last line, and with ``repair=True`` cuts it off so appending continues cleanly.
Non-finite floats are written as the strings "inf", "-inf" and "nan"
(``bpcheck/schemas/report.schema.json``, ``$defs/real``) and read back as floats.
"""
import json
import math
import re
from pathlib import Path

import numpy as np

from bpcheck.core.spec import Case

CASES_FILE = "cases.jsonl"
STATUSES = ("ok", "unsupported", "error")
# Row fields that hold reals (possibly non-finite) -- revived from "inf"/"nan" strings.
REAL_FIELDS = ("err_u", "rel", "tol_u", "margin", "scale", "cosine", "max_abs", "error", "allowed", "sensitivity")


def case_to_json(case):
    """A JSON-able dict holding a case exactly (float32/float64 values round-trip)."""
    def arr(a):
        a = np.asarray(a)
        return {"dtype": str(a.dtype), "shape": list(a.shape), "data": a.ravel().tolist()}
    return {"id": case.id, "spec": case.spec, "meta": case.meta, "x": arr(case.x), "y": arr(case.y),
            "params": {k: arr(v) for k, v in case.params.items()}}


def case_from_json(doc):
    def arr(d):
        return np.asarray(d["data"], dtype=d["dtype"]).reshape(d["shape"])
    return Case(doc["spec"], {k: arr(v) for k, v in doc["params"].items()}, arr(doc["x"]),
                arr(doc["y"]), doc["id"], doc.get("meta", {}))


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def printable(text):
    """``text`` safe to write anywhere: lone surrogates (undecodable file names) and control
    characters other than tab and newline shown as backslash escapes."""
    text = str(text).encode("utf-8", "backslashreplace").decode("utf-8")
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def jsonable(value):
    """``value`` with numpy scalars and arrays made plain, non-finite floats as strings, and
    every string ``printable``."""
    if isinstance(value, str):
        return printable(value)
    if isinstance(value, dict):
        return {printable(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        return _real_json(value)
    return value


def dumps(record):
    """One JSON line for a record. Fast path: only the rows' reals can be non-finite, so only they
    are rewritten; anything else non-finite (or not JSON) takes the full ``jsonable`` walk."""
    fast = dict(record)
    for key in ("rows", "oracle_rows"):
        if key in fast:
            fast[key] = [_row_json(row) for row in fast[key]]
    try:
        return json.dumps(fast, allow_nan=False, separators=(",", ":"))
    except (ValueError, TypeError):
        return json.dumps(jsonable(record), allow_nan=False, separators=(",", ":"))


def _row_json(row):
    out = dict(row)
    for f in REAL_FIELDS:
        if isinstance(out.get(f), float):
            out[f] = _real_json(out[f])
    if "worst" in out:
        out["worst"] = [[i, _real_json(g), _real_json(t)] for i, g, t in out["worst"]]
    return out


def _real_json(v):
    """A real for JSON: finite as a float, non-finite as "nan", "inf" or "-inf"."""
    v = float(v)
    return v if math.isfinite(v) else ("nan" if math.isnan(v) else ("inf" if v > 0 else "-inf"))


def real(value):
    """A row's real back from JSON: numbers as they are, "inf"/"-inf"/"nan" as floats."""
    if isinstance(value, str):
        return float(value)
    return value


def revive(record):
    """Undo ``jsonable`` for the real-valued fields of a record's rows."""
    for key in ("rows", "oracle_rows"):
        for row in record.get(key) or []:
            for f in REAL_FIELDS:
                if f in row:
                    row[f] = real(row[f])
            if isinstance(row.get("worst"), list):  # [index, got, truth]
                row["worst"] = [[index, real(got), real(want)] for index, got, want in row["worst"]]
    return record


def load_records(path, *, repair=False):
    """Records from a cases.jsonl. A truncated or garbled last line (a run killed
    mid-write) is skipped; with ``repair=True`` the file is cut back to the last
    good line so that appending continues cleanly."""
    path = Path(path)
    if not path.exists():
        return []
    records, good_end, offset = [], 0, 0
    with open(path, "rb") as fh:
        for line in fh:
            offset += len(line)
            try:
                record = json.loads(line)
            except ValueError:
                break
            if not isinstance(record, dict) or "case" not in record or not line.endswith(b"\n"):
                break
            records.append(revive(record))
            good_end = offset
    if repair and good_end < path.stat().st_size:
        with open(path, "r+b") as fh:
            fh.truncate(good_end)
    return records

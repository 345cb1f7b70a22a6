"""One measurement in a fresh interpreter: ``python benchmarks/child.py module:function PARAMS_JSON OUT_JSON``.

Calls ``benchmarks.<module>.<function>(params)`` and writes its result, plus the process's
peak memory and thread counts, to OUT_JSON. Started by ``common.in_child``; the guard keeps
spawned worker processes (which import this file as ``__mp_main__``) from running it again.
"""
import json
import sys
from pathlib import Path


def main():
    root = Path(__file__).resolve().parent.parent
    sys.path[:0] = [str(root)]
    import importlib

    from benchmarks.common import peak_rss_mb, threads
    target, params, out = sys.argv[1], json.loads(sys.argv[2]), Path(sys.argv[3])
    module, _, function = target.partition(":")
    result = getattr(importlib.import_module(f"benchmarks.{module}"), function)(params)
    result.setdefault("peak_rss", peak_rss_mb())
    result.setdefault("threads", threads())
    out.write_text(json.dumps(result, default=float))


if __name__ == "__main__":
    main()

"""Write a failing case as files a person can rerun without bpcheck: the case
(``<id>.json`` + ``<id>.npz`` via ``bpcheck.core.spec.save_case``) and a standalone
``repro_<id>.py``.

The script is ``bpcheck/diagnose/repro_template.py`` with its ``CONFIG`` filled in: the
target to call (a Python ``module:function`` / ``file.py:function``, or the argv
of a protocol program), the float64 truth of every tensor bpcheck compared, and
the error each may have (``allowed``: ``bpcheck.judge.compare``'s absolute tolerance,
||g - g*||_2 <= allowed). It needs only NumPy and the target; it loads the
.json/.npz itself with ``json`` and ``numpy.load``. Where bpcheck is importable
the script also asks ``bpcheck.judge.judge`` and exits with its verdict (notes such as
a kink are not failures there); its own rule is the tolerance part of that
judgement, a copy tested to agree with it.
"""
import json
import math
from pathlib import Path

import numpy as np

from bpcheck.core.spec import save_case
from bpcheck.judge.compare import lookup
from bpcheck.judge.judge import chain_order

_MARKER = "CONFIG = {}  # filled in by bpcheck.diagnose.repro"


def key(row):
    """The name a row's tensor has in the script: loss, input_grad, layers.0.W, layers.0.delta ..."""
    return row["tensor"] if row["layer"] is None else f"layers.{row['layer']}.{row['tensor']}"


def python_target(target):
    """A target string that works from any directory: file paths made absolute."""
    module, sep, attr = target.rpartition(":")
    if module.endswith(".py"):
        return f"{Path(module).resolve()}{sep}{attr}"
    return target


def render(config):
    """The template with CONFIG set; each entry on one line, as a Python literal."""
    lines = ["CONFIG = {"]
    for name, value in config.items():
        lines.append(f"    {json.dumps(name)}: {json.dumps(value, allow_nan=False)},")
    lines.append("}")
    template = Path(__file__).with_name("repro_template.py").read_text()
    assert _MARKER in template
    return template.replace(_MARKER, "\n".join(lines))


def write_repro(case, rows, truth, directory, *, target=None, exec_argv=None, cwd=None, finding=""):
    """Save ``case`` into ``directory`` with ``repro_<id>.py``; return the script's path."""
    directory = Path(directory)
    save_case(case, directory)
    truth_values, allowed = {}, {}
    for row in chain_order(rows):
        value = lookup(truth, row["layer"], row["tensor"])
        if value is None or not math.isfinite(row.get("allowed", math.nan)):
            continue
        truth_values[key(row)] = np.asarray(value, np.float64).tolist()
        allowed[key(row)] = row["allowed"]
    config = {"case": f"{case.id}.json", "cwd": str(Path(cwd or ".").resolve())}
    if exec_argv:
        config["exec"] = list(exec_argv)
    else:
        config["target"] = python_target(target)
    config.update(finding=finding, allowed=allowed, truth=truth_values)
    script = directory / f"repro_{case.id}.py"
    script.write_text(render(config))
    script.chmod(0o755)
    return script

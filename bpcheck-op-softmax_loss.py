"""Re-judge the saved failing case of softmax_loss (written by bpcheck op). Run: python bpcheck-op-softmax_loss.py"""
import sys
from pathlib import Path

from bpcheck import ops
from bpcheck.ops.cases import load, schema_document
from bpcheck.opcheck.check import diagnosis, judge_case
from bpcheck.opcheck.cli import candidate_from

here = Path(__file__).resolve().parent
case = load(here / 'bpcheck-op-softmax_loss')
candidate = candidate_from('layers', '/tmp/hunt/layers_alt.py', extended=False)
rows, cls = judge_case(ops.get(case.op), candidate, case)
for r in rows:
    print(f"{r['tensor']:8} {r['status']:5} {r.get('err_u', float('nan')):10.3g} u  (tolerance "
          f"{r.get('tol_u', float('nan')):.3g} u) {r['message']}")
print(diagnosis({"case": case, "rows": rows}) if cls == "bug" else "passes: " + cls)
sys.exit(1 if cls == "bug" else 0)

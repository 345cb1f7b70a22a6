"""A valid hello, then {"error": {"kind": "unsupported"}} for every request: declined, not a failure."""
import json
import sys

print(json.dumps({"protocol": "bpcheck-op/1", "ops": ["layernorm"], "dtypes": ["float32", "float64"]}), flush=True)
for line in sys.stdin:
    print(json.dumps({"id": json.loads(line)["id"], "error": {"kind": "unsupported"}}), flush=True)

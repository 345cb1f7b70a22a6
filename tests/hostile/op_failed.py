"""A valid hello, then {"error": {"kind": "failed", "message": "boom"}} for every request."""
import json
import sys

print(json.dumps({"protocol": "bpcheck-op/1", "ops": ["layernorm"], "dtypes": ["float32", "float64"]}), flush=True)
for line in sys.stdin:
    print(json.dumps({"id": json.loads(line)["id"], "error": {"kind": "failed", "message": "boom"}}), flush=True)

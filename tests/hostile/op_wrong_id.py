"""A valid hello, then replies that carry an id no request had."""
import json
import sys

print(json.dumps({"protocol": "bpcheck-op/1", "ops": ["layernorm"], "dtypes": ["float32", "float64"]}), flush=True)
for line in sys.stdin:
    print(json.dumps({"id": "case-that-never-was", "out": [0.0], "grads": {}}), flush=True)

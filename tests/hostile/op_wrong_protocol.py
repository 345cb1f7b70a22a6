"""A hello line of the dense protocol, bpcheck/1, where bpcheck-op/1 is expected."""
import json
import sys

print(json.dumps({"protocol": "bpcheck/1", "activations": ["relu"], "losses": ["mse"], "dtypes": ["float64"]}),
      flush=True)
for line in sys.stdin:
    pass

"""A valid hello, then it reads a request and never replies."""
import json
import sys
import time

print(json.dumps({"protocol": "bpcheck-op/1", "ops": ["layernorm"], "dtypes": ["float32", "float64"]}), flush=True)
sys.stdin.readline()
time.sleep(60)

"""One module per op family; each defines its records (bpcheck.ops.record.Op)."""

"""Proof of the checker: the bug zoo (``zoo``), the false-alarm campaign (``campaign``), gradcheck
and check_grads on the same cases (``baselines``) and the golden vectors (``vectors``).
"""

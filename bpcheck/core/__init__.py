"""The shared vocabulary: Spec and Case with their JSON + .npz files (``spec``), records and
JSON lines (``records``), and the rounding models of every formula (``rounding``).
"""

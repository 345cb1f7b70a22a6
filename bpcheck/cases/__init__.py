"""The cases: the Hypothesis recipe with its edge families (``strategies``) and a run's grid of
cases (``generate``).
"""

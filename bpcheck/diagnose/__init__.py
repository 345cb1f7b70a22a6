"""Diagnosis of a failure: the first wrong link and its hints (``diagnose``), the search and shrink
(``search``), the lines only failing cases run (``explain``), the repro script (``repro``,
``repro_template``) and the computation-graph SVG (``graph``).
"""

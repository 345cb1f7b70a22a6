"""Checking an implementation against the op records: one op (``check``), a whole graph of ops
(``graph_check``), the ways in (``candidates``, ``protocol``), the judgement against each record's
tolerance (``judge``, ``graph_local``), the reports, baselines, campaigns and CLI commands of both.
The records themselves, their readings and the graph IR are ``bpcheck.ops``."""

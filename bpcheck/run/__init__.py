"""Running candidates: backends and adapters (``backends``; the line protocol, ``protocol``; the
Python worker process, ``pyworker``), support probing (``support``), judging cases (``engine``),
the process pool (``pool``), progress and signals.
"""

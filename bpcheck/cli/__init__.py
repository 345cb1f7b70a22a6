"""The ways in: the ``bpcheck`` command line (``cli``) and the commands that live here
(``validate``, ``check``, ``selftest``), and the pytest plugin (``pytest_plugin``).
"""

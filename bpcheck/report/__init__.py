"""Reports: aggregation and writing (``report``), Markdown and HTML (``render``), plots (``plots``),
joining shards (``merge``) and a validate run's verdict section (``verdict``).
"""

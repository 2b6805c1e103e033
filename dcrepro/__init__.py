"""dcrepro: reproduce the result tables of deep-clustering papers and diff them against the papers.

Layers (one module per concept): ``metrics`` (ACC/NMI/ARI), ``seeding``, ``data`` (data sets and
embeddings), ``methods`` (one module per clustering method), ``spec`` (reads ``benchmarks/*.toml``),
``store`` (sqlite result store), ``runner`` (plan -> runs), ``reference`` (paper numbers and tolerance
bands), ``claims`` (paired tests of the papers' relative claims), ``tables`` and ``plots`` (rendering),
``cli`` (the ``dcrepro`` command).
"""

__version__ = "0.1.0"

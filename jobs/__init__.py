"""Spark drivers, one per batch job (`spark-submit jobs/<name>.py`), and the `tokenmill` CLI over them.

Run as a script, a file in this folder puts the folder itself first on `sys.path`, where
`jobs/tokenize.py` would stand in for the standard library's `tokenize` (which `inspect`, `linecache`
and so numpy and pyspark import). Each job script therefore starts by putting the repository root
there instead, before any other import.
"""

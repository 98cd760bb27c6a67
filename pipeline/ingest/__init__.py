"""Ingest: Common Crawl files -> documents, one input unit at a time.

The data's path: sources (which files) -> warc (records) -> charset (text) -> extract (main text) ->
filters (URL, language, Gopher, C4, FineWeb) -> output (Parquet, stats, markers). `unit.process_unit`
strings them together for one input file; `tokenmill.jobs` runs it on Spark.
"""

"""tokenmill's pipeline stages: plain Python over plain records, no Spark import anywhere below here.

The data's path: sources (which files) -> warc (records) -> charset (text) -> extract (main text)
-> filters (URL, language, Gopher, C4, FineWeb) -> output (Parquet, stats, markers).
`ingest.process_unit` strings them together for one input file; `jobs/` runs it on Spark.
"""

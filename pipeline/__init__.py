"""tokenmill's pipeline stages as plain Python over plain records; no Spark import anywhere below here.

ingest/ (files -> documents) -> dedup/ (keys, PII) -> report/ (a run's page); storage/ is the I/O layer
every stage reads and writes through, recipe.py holds every threshold of a run, errors.py the user-error
type. The tokenizer and trainer live beside this package (`tokenmill.tokenizer`, `tokenmill.trainer`).
"""

"""Dedup: per-document keys (normalized-text hash, MinHash band keys) and PII scrubbing, over Arrow
batches; the Spark shuffles that join them into clusters live in `tokenmill.jobs`."""

"""Spark drivers: one module per batch job, each runnable as `spark-submit jobs/<name>.py ...`."""

"""Every Spark-specific line of tokenmill: the session, datasets in and out of Spark through the storage
layer, the shuffles and graph steps of the stages, and the progress line."""

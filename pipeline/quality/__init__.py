"""Model-based quality scores: a fastText classifier of "good" against "random" text.

classifier.py loads a model directory and scores texts (ingest's `score_<name>` columns); train.py
trains one on a user's positives and negatives and evaluates it on a held-out part. models/demo/ is a
small demonstration model trained on the repository's own sample texts.
"""

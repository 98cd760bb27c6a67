"""The run report: ROOT/report.html, one page that says what a run did, from the files the jobs left.

It shows the record funnel through every stage with its drop reasons, the language distribution, the
document-length and quality-signal histograms with the recipe's thresholds drawn on them, the dedup
cluster sizes, the tokens per shard and, when ROOT holds a trainer's metrics.jsonl, the loss curve
(and a fine-tune's beside it).

`read` turns ROOT's files into plain data, `svg` draws the charts, `page` lays out the HTML.
"""

from tokenmill.pipeline.report.page import render, write_report
from tokenmill.pipeline.report.read import funnel, read_run, thresholds

__all__ = ["funnel", "read_run", "render", "thresholds", "write_report"]

"""Building the Spark session the jobs share, with the settings a Python-heavy pipeline needs."""

from __future__ import annotations

import argparse
import os
import sys

from pyspark.sql import SparkSession


def build_session(master: str | None, app_name: str, conf: dict[str, str] | None = None) -> SparkSession:
    """A session on `master` (None: whatever spark-submit set, else local[*]).

    Python workers must run this interpreter (PYSPARK_PYTHON) or imports fail on executors; workers
    are reused so each one loads the language model and forks the extractor once.
    """
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    builder = SparkSession.builder.appName(app_name)
    launched_by_spark_submit = "PYSPARK_GATEWAY_PORT" in os.environ  # spark-submit already chose a master
    if master or not launched_by_spark_submit:
        builder = builder.master(master or os.environ.get("TOKENMILL_MASTER", "local[*]"))
    settings = {
        "spark.python.worker.reuse": "true",
        "spark.ui.showConsoleProgress": "false",
        "spark.sql.session.timeZone": "UTC",
        "spark.driver.memory": os.environ.get("TOKENMILL_DRIVER_MEMORY", "2g"),
        **(conf or {}),
    }
    for key, value in settings.items():
        builder = builder.config(key, value)
    session = builder.getOrCreate()
    session.sparkContext.setLogLevel(os.environ.get("TOKENMILL_SPARK_LOG_LEVEL", "WARN"))
    return session


def add_cluster_arguments(parser: argparse.ArgumentParser) -> None:
    """--master and --s3-endpoint, which every Spark job takes."""
    parser.add_argument(
        "--master", default=None, help="Spark master URL (default: spark-submit's, else local[*])"
    )
    parser.add_argument(
        "--s3-endpoint",
        default=None,
        metavar="URL",
        help="S3-compatible endpoint (also AWS_ENDPOINT_URL); the public commoncrawl bucket is read unsigned",
    )

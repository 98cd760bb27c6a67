"""Building the Spark session the jobs share, with the settings a Python-heavy pipeline needs."""

from __future__ import annotations

import argparse
import os
import sys

from pyspark.sql import SparkSession

# C1 only: a local JVM that just schedules Python tasks and moves their bytes compiles little worth C2's
# optimizing, and C2's compiler threads take the cores the Python workers need. Measured on tokenize,
# 530 MB on local[2]: the job's 38.5 s fell to 28.3 s.
QUICK_JIT = "-XX:TieredStopAtLevel=1"


def quick_jit(master: str, python_bound: bool, launched_by_spark_submit: bool) -> bool:
    """Whether the JVM about to be launched gets QUICK_JIT: a Python-bound job on a local master whose
    JVM this process launches, and the user gave no driver JVM options of their own."""
    own_options = "extraJavaOptions" in os.environ.get("PYSPARK_SUBMIT_ARGS", "")
    return python_bound and master.startswith("local") and not launched_by_spark_submit and not own_options


def build_session(
    master: str | None, app_name: str, conf: dict[str, str] | None = None, python_bound: bool = False
) -> SparkSession:
    """A session on `master` (None: whatever spark-submit set, else local[*]).

    Python workers must run this interpreter (PYSPARK_PYTHON) or imports fail on executors; workers
    are reused so each one loads the language model and forks the extractor once. `python_bound`
    says the job's work is all in Python tasks: a local JVM this call launches then compiles with C1
    only (QUICK_JIT), unless the user gave the driver JVM options of their own.
    """
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    builder = SparkSession.builder.appName(app_name)
    launched_by_spark_submit = "PYSPARK_GATEWAY_PORT" in os.environ  # spark-submit already chose a master
    chosen = master or ("" if launched_by_spark_submit else os.environ.get("TOKENMILL_MASTER", "local[*]"))
    if chosen:
        builder = builder.master(chosen)
    if quick_jit(chosen, python_bound, launched_by_spark_submit):
        builder = builder.config("spark.driver.extraJavaOptions", QUICK_JIT)
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

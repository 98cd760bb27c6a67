"""One progress line per stage, refreshed in place, from Spark's status tracker.

Spark's own console progress bar is per stage and floods logs; a tokenmill stage is many Spark jobs.
`StageProgress` tags the jobs a stage starts with a job group and sums their tasks: units done / total,
documents per second where the stage counts documents as they finish, and an ETA from the rate so far.
On a terminal the line is redrawn every half second; in a log it is printed at most every 30 seconds.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import TextIO

from pyspark.sql import SparkSession

LOG_INTERVAL_S = 30.0


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes // 60}:{minutes % 60:02d}:{secs:02d}"


class StageProgress:
    """`with StageProgress(spark, "ingest") as progress:` around the Spark work of one stage.

    units: a fixed number of units (input files) when the stage has one Spark task per unit; else the
    tasks of the stage's jobs so far are the units. `progress.documents` is an accumulator that the
    stage's tasks add their documents to (Spark merges it as each task finishes), for docs/s.
    """

    def __init__(
        self,
        spark: SparkSession,
        stage: str,
        units: int | None = None,
        stream: TextIO | None = None,
        interval: float = 0.5,
    ):
        self.context = spark.sparkContext
        self.stage, self.units = stage, units
        self.documents = self.context.accumulator(0)
        self.stream = stream or sys.stderr
        self.interval = interval
        self.group = f"tokenmill-{stage}-{time.time_ns()}"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"progress-{stage}", daemon=True)
        self._width = 0

    def __enter__(self) -> StageProgress:
        self.started = time.perf_counter()
        self.context.setJobGroup(self.group, f"tokenmill {self.stage}", interruptOnCancel=False)
        self._thread.start()
        return self

    def __exit__(self, error_type: type | None, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.context.setLocalProperty("spark.jobGroup.id", None)
        if error_type is None:  # a failed stage says why in its error, not with a "done" line
            self._show(self.line(final=True), end="\n")
        elif self.stream.isatty() and self._width:
            self._show("", end="\r")

    def tasks(self) -> tuple[int, int]:
        """(completed, total) tasks over the stage's jobs so far."""
        tracker = self.context.statusTracker()
        done = total = 0
        for job_id in tracker.getJobIdsForGroup(self.group):
            job = tracker.getJobInfo(job_id)
            for stage_id in job.stageIds if job else []:
                info = tracker.getStageInfo(stage_id)
                if info is not None:
                    done += info.numCompletedTasks
                    total += info.numTasks
        return done, total

    def line(self, final: bool = False) -> str:
        elapsed = time.perf_counter() - self.started
        done, total = self.tasks()
        if self.units is not None:  # one task per unit
            done, total, label = min(done, self.units), self.units, "units"
        else:
            label = "tasks"
        # Spark counts the tasks of stages it skips (their shuffle output is reused) in a job's total
        # but never completes them, so a finished stage shows the tasks that ran.
        parts = [
            f"{self.stage:<9}",
            f"{label} {done:,}" if final and label == "tasks" else f"{label} {done:,}/{total:,}",
        ]
        if self.documents.value and elapsed > 0:
            parts.append(f"{self.documents.value / elapsed:,.1f} docs/s")
        if final:
            parts.append(f"done in {_clock(elapsed)}")
        elif 0 < done < total:
            parts.append(f"ETA {_clock(elapsed / done * (total - done))}")
        parts.append(f"[{_clock(elapsed)}]")
        return "  ".join(parts)

    def _show(self, text: str, end: str = "") -> None:
        if self.stream.isatty():
            self.stream.write("\r" + text.ljust(self._width) + end)
            self._width = len(text)
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def _loop(self) -> None:
        last_logged = time.perf_counter()
        while not self._stop.wait(self.interval):
            if self.stream.isatty():
                self._show(self.line())
            elif time.perf_counter() - last_logged >= LOG_INTERVAL_S:
                self._show(self.line())
                last_logged = time.perf_counter()

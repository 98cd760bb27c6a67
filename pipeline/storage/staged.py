"""A file built on local disk by a writer that needs a real path (Parquet, numpy), then published to
its URI atomically in one step.

For a local target it is built under a hidden temporary name beside the target and published by a
rename: no second copy of the bytes. For S3 it is built in a local temporary directory and published by
an upload, which becomes visible only when it finishes. Either way a crash leaves nothing under the
final name; a local leftover is hidden and `remove_stale_temps` removes it.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from tokenmill.pipeline.storage import local
from tokenmill.pipeline.storage.s3 import S3Options
from tokenmill.pipeline.storage.uri import local_path


class StagedFile:
    """`path` is where to write; `publish()` makes it `uri`, `discard()` drops it (both idempotent)."""

    def __init__(self, uri: str, s3: S3Options):
        self.uri, self.s3 = uri, s3
        self._target = local_path(uri)
        if self._target is not None:
            Path(self._target).parent.mkdir(parents=True, exist_ok=True)
            self._directory = None
            self.path = local.temp_path(self._target)
        else:
            self._directory = tempfile.mkdtemp(prefix="tokenmill-staged-")
            self.path = os.path.join(self._directory, "object")

    def publish(self) -> None:
        """Sync and rename over a local target, or upload to S3; the staged file is gone afterwards."""
        if self._target is not None:
            local.publish(self.path, self._target)
        else:
            from tokenmill.pipeline.storage import upload_file_atomic

            try:
                upload_file_atomic(self.path, self.uri, self.s3)
            finally:
                self.discard()

    def discard(self) -> None:
        if self._directory is not None:
            shutil.rmtree(self._directory, ignore_errors=True)
        else:
            Path(self.path).unlink(missing_ok=True)

"""Checking an output root before any work starts, so a wrong `-o` is one line, not a failed Spark job.

Permissions alone do not say whether a write will succeed: a read-only filesystem or bucket policy, a
quota or a full disk refuse writes that modes and a bucket's existence allow. So the check ends with a
real write: a small hidden probe file (object) is written where the outputs go and deleted again.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

from tokenmill.pipeline.errors import UserError
from tokenmill.pipeline.storage import S3Options, join, local_path, s3_client, split_s3
from tokenmill.pipeline.storage.uri import redact, redact_text

_MISSING_BUCKET = {"404", "NoSuchBucket", "NotFound"}
PROBE_PREFIX = ".tokenmill-probe-"  # hidden: listings of datasets and fingerprints leave it out


def _probe_name() -> str:
    return f"{PROBE_PREFIX}{secrets.token_hex(6)}"


def check_writable_root(root: str, s3: S3Options) -> None:
    """A UserError naming what is wrong with `root` (a file, unwritable, a missing bucket, no
    credentials, an unreachable endpoint) and how to fix it; None when a probe was written there."""
    if root.startswith("s3://"):
        _check_bucket(root, s3)
        return
    path = local_path(root)
    if path is None:
        raise UserError(f"-o {redact(root)}: outputs go to a local path or s3://bucket/prefix, not a web URL")
    if os.path.exists(path) and not os.path.isdir(path):
        raise UserError(f"-o {root} is a file; give a directory (it is created if missing)")
    existing = os.path.abspath(path)
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise UserError(f"-o {root}: {existing} is a file, so the directory cannot be created there")
    _probe_directory(root, existing)


def _probe_directory(root: str, directory: str) -> None:
    """Write and delete a hidden file in `directory`: the root, or the nearest existing parent it will be
    created in."""
    probe = os.path.join(directory, _probe_name())
    try:
        try:
            with open(probe, "xb") as handle:
                handle.write(b"tokenmill write probe\n")
                handle.flush()
                os.fsync(handle.fileno())
        finally:
            Path(probe).unlink(missing_ok=True)
    except OSError as exc:
        raise UserError(
            f"-o {root}: cannot write in {directory} ({exc.strerror}); choose another -o or fix its "
            "permissions, mount or free space"
        ) from None


def _check_bucket(root: str, s3: S3Options) -> None:
    bucket, _ = split_s3(root)
    if not bucket:
        raise UserError(f"-o {root}: name a bucket, as in s3://bucket/prefix")
    client = s3_client(s3, bucket)
    try:
        client.head_bucket(Bucket=bucket)
        _probe_bucket(root, client)
    except NoCredentialsError:
        raise UserError(
            f"-o {root}: no AWS credentials; set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or AWS_PROFILE"
        ) from None
    except ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code"))
        if code in _MISSING_BUCKET:
            raise UserError(
                f"-o {root}: bucket {bucket!r} does not exist; create it or fix the path"
            ) from None
        if code in ("403", "AccessDenied"):
            raise UserError(f"-o {root}: access to bucket {bucket!r} denied; check the credentials") from None
        raise
    except BotoCoreError as exc:
        endpoint = s3.endpoint() or "AWS S3"  # its message names the endpoint too: both are redacted
        raise UserError(
            redact_text(f"-o {root}: cannot reach {endpoint} ({exc}); check --s3-endpoint")
        ) from None


def _probe_bucket(root: str, client: Any) -> None:
    """Put and delete a hidden object under the root's prefix: a bucket policy or credentials that allow
    reading but not writing (or not deleting, which every rerun needs) fail here, not after the job."""
    bucket, key = split_s3(join(root, _probe_name()))
    action = "write"
    try:
        client.put_object(Bucket=bucket, Key=key, Body=b"tokenmill write probe\n")
        action = "delete"
        client.delete_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        error = exc.response.get("Error", {})
        raise UserError(
            f"-o {root}: cannot {action} objects in bucket {bucket!r} ({error.get('Code')}: "
            f"{error.get('Message')}); check the bucket policy and the credentials' permissions"
        ) from None

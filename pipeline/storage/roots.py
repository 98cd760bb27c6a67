"""Checking an output root before any work starts, so a wrong `-o` is one line, not a failed Spark job."""

from __future__ import annotations

import os

from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

from tokenmill.pipeline.errors import UserError
from tokenmill.pipeline.storage import S3Options, local_path, s3_client, split_s3

_MISSING_BUCKET = {"404", "NoSuchBucket", "NotFound"}


def check_writable_root(root: str, s3: S3Options) -> None:
    """A UserError naming what is wrong with `root` (a file, unwritable, a missing bucket, no
    credentials, an unreachable endpoint) and how to fix it; None when it can be written."""
    if root.startswith("s3://"):
        _check_bucket(root, s3)
        return
    path = local_path(root)
    if path is None:
        raise UserError(f"-o {root}: outputs go to a local path or s3://bucket/prefix, not a web URL")
    if os.path.exists(path) and not os.path.isdir(path):
        raise UserError(f"-o {root} is a file; give a directory (it is created if missing)")
    existing = os.path.abspath(path)
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise UserError(f"-o {root}: {existing} is a file, so the directory cannot be created there")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(f"-o {root}: {existing} is not writable; choose another -o or fix its permissions")


def _check_bucket(root: str, s3: S3Options) -> None:
    bucket, _ = split_s3(root)
    if not bucket:
        raise UserError(f"-o {root}: name a bucket, as in s3://bucket/prefix")
    try:
        s3_client(s3, bucket).head_bucket(Bucket=bucket)
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
        endpoint = s3.endpoint() or "AWS S3"
        raise UserError(f"-o {root}: cannot reach {endpoint} ({exc}); check --s3-endpoint") from None

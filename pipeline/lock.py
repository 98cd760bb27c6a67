"""One writer per output root: ROOT/_LOCK.json, taken before a command writes anything and released at
the end, so two runs into one root cannot both process every unit with settings that win by timing.

The lock file records who holds it (owner, host, pid, command, start and heartbeat times, a token).
Every change to it is a compare-and-swap on the version read before, so exactly one process wins:

* create: local `O_CREAT | O_EXCL`; S3 `PutObject` with `If-None-Match: *`.
* replace (heartbeat, takeover): local, under an flock of ROOT, only if the content is still the one
  read; S3 `PutObject` with `If-Match: <ETag>` (S3 and moto support both conditional writes).
* release: delete only if the content is still ours (S3 `DeleteObject` with `If-Match`).

A holder refreshes the heartbeat every HEARTBEAT_SECONDS from a daemon thread. A lock held by a process
that no longer runs on this host (kill -9), or from another host with a heartbeat older than
STALE_SECONDS (a lost host), belongs to a dead run and is taken over; `--force` takes any lock.
Staleness across hosts compares their clocks, so it is minutes, not seconds.
"""

from __future__ import annotations

import fcntl
import getpass
import hashlib
import json
import os
import secrets
import socket
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Any, Protocol

from botocore.exceptions import ClientError

from tokenmill.pipeline.errors import UserError
from tokenmill.pipeline.storage import S3Options, join, local_path, s3_client, split_s3

LOCK_NAME = "_LOCK.json"
HEARTBEAT_SECONDS = 15.0
STALE_SECONDS = 300.0
_LOST_CODES = {"PreconditionFailed", "412", "ConditionalRequestConflict", "409", "NoSuchKey", "404"}


class LockFile(Protocol):
    """Conditional operations on one small file; `version` identifies the content last seen."""

    def create(self, data: bytes) -> str | None:
        """Write `data` if no file exists; its version, or None when one exists."""
        ...

    def read(self) -> tuple[bytes, str] | None:
        """(content, version), or None when there is no file."""
        ...

    def replace(self, data: bytes, version: str) -> str | None:
        """Write `data` if the file is still at `version`; the new version, or None."""
        ...

    def delete(self, version: str) -> None:
        """Remove the file if it is still at `version`."""
        ...


class LocalLockFile:
    """A lock file on a local (or POSIX network) filesystem; versions are content hashes."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.directory = os.path.dirname(path)

    @contextmanager
    def _exclusive(self) -> Iterator[None]:
        """Serialize read-compare-write among processes; the kernel drops an flock when its holder dies."""
        os.makedirs(self.directory, exist_ok=True)
        handle = os.open(self.directory, os.O_RDONLY)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX)
            yield
        finally:
            os.close(handle)

    def create(self, data: bytes) -> str | None:
        os.makedirs(self.directory, exist_ok=True)
        try:
            handle = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return None
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        return _digest(data)

    def read(self) -> tuple[bytes, str] | None:
        try:
            with open(self.path, "rb") as stream:
                data = stream.read()
        except FileNotFoundError:
            return None
        return data, _digest(data)

    def replace(self, data: bytes, version: str) -> str | None:
        with self._exclusive():
            current = self.read()
            if current is None or current[1] != version:
                return None
            temp = os.path.join(self.directory, f".{os.path.basename(self.path)}.{secrets.token_hex(4)}.tmp")
            with open(temp, "wb") as stream:
                stream.write(data)
                stream.flush()
                os.fsync(stream.fileno())
            os.replace(temp, self.path)
        return _digest(data)

    def delete(self, version: str) -> None:
        with self._exclusive():
            current = self.read()
            if current is not None and current[1] == version:
                os.unlink(self.path)


class S3LockFile:
    """A lock object on S3; versions are ETags, and every write is conditional on one."""

    def __init__(self, uri: str, s3: S3Options) -> None:
        self.bucket, self.key = split_s3(uri)
        self.client = s3_client(s3, self.bucket)

    def _put(self, data: bytes, **condition: str) -> str | None:
        try:
            response = self.client.put_object(Bucket=self.bucket, Key=self.key, Body=data, **condition)
        except ClientError as exc:
            if _error_code(exc) in _LOST_CODES:
                return None
            raise
        return str(response["ETag"]).strip('"')

    def create(self, data: bytes) -> str | None:
        return self._put(data, IfNoneMatch="*")

    def read(self) -> tuple[bytes, str] | None:
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=self.key)
        except ClientError as exc:
            if _error_code(exc) in _LOST_CODES:
                return None
            raise
        with response["Body"] as body:
            return body.read(), str(response["ETag"]).strip('"')

    def replace(self, data: bytes, version: str) -> str | None:
        return self._put(data, IfMatch=version)

    def delete(self, version: str) -> None:
        try:
            self.client.delete_object(Bucket=self.bucket, Key=self.key, IfMatch=version)
        except ClientError as exc:
            if _error_code(exc) not in _LOST_CODES:
                raise


def _error_code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code"))


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _now() -> datetime:
    return datetime.now(timezone.utc)


def lock_file(root: str, s3: S3Options) -> LockFile:
    """The lock file of `root` on its store."""
    uri = join(root, LOCK_NAME)
    path = local_path(uri)
    return LocalLockFile(path) if path is not None else S3LockFile(uri, s3)


class RootLock:
    """The lock of one root for the length of a command: `with RootLock(root, s3, "dedup ..."):`."""

    def __init__(
        self,
        root: str,
        s3: S3Options,
        command: str,
        *,
        force: bool = False,
        heartbeat_seconds: float = HEARTBEAT_SECONDS,
        stale_seconds: float = STALE_SECONDS,
    ) -> None:
        self.root, self.command, self.force = root, command, force
        self.heartbeat_seconds, self.stale_seconds = heartbeat_seconds, stale_seconds
        self.file = lock_file(root, s3)
        self.token = secrets.token_hex(8)
        self.started = _now()
        self.version: str | None = None
        self.lost = False
        self._stop = threading.Event()
        self._beating: threading.Thread | None = None

    def _record(self) -> bytes:
        record = {
            "owner": getpass.getuser(),
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "command": self.command,
            "started": self.started.isoformat(timespec="seconds"),
            "heartbeat": _now().isoformat(timespec="milliseconds"),
            "token": self.token,
        }
        return json.dumps(record, indent=1).encode()

    def _stale(self, holder: dict[str, Any]) -> bool:
        """Whether the holder is gone: its process is not running on this host, or (another host) its
        heartbeat stopped more than stale_seconds ago."""
        if holder.get("host") == socket.gethostname() and isinstance(holder.get("pid"), int):
            return not _running(holder["pid"])
        try:
            beat = datetime.fromisoformat(holder["heartbeat"])
        except (KeyError, TypeError, ValueError):
            return True  # not a lock tokenmill wrote whole: nobody can be refreshing it
        return (_now() - beat).total_seconds() > self.stale_seconds

    def acquire(self) -> None:
        """Take the lock, or a UserError naming the holder; a stale lock (or any, with force) is taken
        over. Three rounds cover a holder that releases or is taken over while we look."""
        for _ in range(3):
            if (version := self.file.create(self._record())) is not None:
                self.version = version
                break
            held = self.file.read()
            if held is None:
                continue  # released between our create and our read
            data, version = held
            try:
                holder = json.loads(data)
            except ValueError:
                holder = {}
            if holder.get("token") == self.token:  # our own create, retried after a lost response
                self.version = version
                break
            if not (self.force or self._stale(holder)):
                raise UserError(self._held_message(holder))
            if (taken := self.file.replace(self._record(), version)) is not None:
                how = "--force" if self.force else "stale"
                print(f"tokenmill: took over the lock of {self.root} ({how}): {_describe(holder)}")
                self.version = taken
                break
        else:
            raise UserError(f"{self.root} is being locked by another run right now; try again")
        self._beating = threading.Thread(target=self._heartbeat, name="tokenmill-lock", daemon=True)
        self._beating.start()

    def _held_message(self, holder: dict[str, Any]) -> str:
        return (
            f"{self.root} is locked by another run ({_describe(holder)}); wait for it to end, or pass "
            f"--force if it is dead (a lock without a heartbeat for {self.stale_seconds:.0f} s is taken "
            "over by itself)"
        )

    def _heartbeat(self) -> None:
        while not self._stop.wait(self.heartbeat_seconds):
            assert self.version is not None
            if (version := self.file.replace(self._record(), self.version)) is None:
                self.lost = True
                print(f"tokenmill: WARNING: another run took the lock of {self.root}", file=sys.stderr)
                return
            self.version = version

    def release(self) -> None:
        """Stop the heartbeat and remove the lock if it is still ours."""
        self._stop.set()
        if self._beating is not None:
            self._beating.join()
        if self.version is not None and not self.lost:
            self.file.delete(self.version)
        self.version = None

    def __enter__(self) -> RootLock:
        self.acquire()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()
        if self.lost and exc_info[0] is None:
            raise UserError(f"another run took the lock of {self.root} during this one; check its outputs")


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True


def _describe(holder: dict[str, Any]) -> str:
    who = f"{holder.get('owner', '?')}@{holder.get('host', '?')} pid {holder.get('pid', '?')}"
    return f"{who}, `{holder.get('command', '?')}`, started {holder.get('started', '?')}"

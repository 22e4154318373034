"""Every failure pgautodumper can report, in one hierarchy.

The class name of each exception is a public name: Step Functions matches it
in ``Retry``/``Catch`` ``ErrorEquals`` (a Lambda's ``errorType`` is the class
name of the exception it raised), and the CLI maps each class to its own exit
code, documented in the README.

    PgautodumperError                      exit 1   anything not classified below
    ├── UsageError                         exit 2   bad flags or flag combinations
    ├── DatabaseError
    │   ├── DatabaseAuthError              exit 10  password/role rejected
    │   │   └── PreflightAuthError         exit 10  ... found by the preflight check
    │   ├── DatabaseUnreachableError       exit 11  DNS, refused, timeout
    │   │   └── PreflightConnectionError   exit 11  ... found by the preflight check (retryable)
    │   ├── DatabaseNotFoundError          exit 12  the database does not exist
    │   ├── DatabasePermissionError        exit 13  the role cannot read some objects
    │   │   └── PreflightPermissionError   exit 13  ... names every unreadable object
    │   └── TargetNotEmptyError            exit 14  restore target holds objects, no --clean
    ├── PgToolError
    │   ├── PgVersionMismatchError         exit 20  no pg_dump/pg_restore new enough
    │   ├── DumpFailedError                exit 21  pg_dump, compressor or upload failed
    │   └── RestoreFailedError             exit 22  pg_restore failed
    ├── StorageError
    │   ├── BucketNotFoundError            exit 30
    │   ├── StorageAccessDeniedError       exit 31
    │   ├── BackupNotFoundError            exit 32  no such key / no complete backup
    │   ├── BackupExistsError              exit 33  the run's key is already taken
    │   ├── StorageUnavailableError        exit 34  endpoint unreachable, S3 5xx
    │   └── BackupAlreadyRunningError      exit 35  another execution holds the name's lock
    ├── SecretError
    │   ├── SecretNotFoundError            exit 40
    │   ├── SecretAccessDeniedError        exit 41
    │   └── SecretMalformedError           exit 42  names missing keys, never values
    ├── IntegrityError
    │   ├── ChecksumMismatchError          exit 50  stored bytes differ from the manifest
    │   ├── ManifestError                  exit 51  unreadable manifest or unknown format_version
    │   └── VerifyMismatchError            exit 52  restored row counts differ
    ├── NotificationError                  exit 60  SNS publish failed (Slack only logs)
    └── Interrupted                        exit 130 SIGINT/SIGTERM; uploads were aborted

Messages say what failed, for which database or key, and what to try next.
They never contain a password: every message built from a driver or tool
error goes through :func:`redact` first.
"""

from __future__ import annotations

import re
from collections.abc import Iterable


class PgautodumperError(Exception):
    """Base class; ``exit_code`` is the process exit status the CLI uses."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        # One line, always: messages often quote multi-line driver output.
        self.message = " ".join(message.split())
        self.hint = hint
        super().__init__(self.render())

    def render(self) -> str:
        return f"{self.message}; {self.hint}" if self.hint else self.message


class UsageError(PgautodumperError):
    exit_code = 2


class DatabaseError(PgautodumperError):
    exit_code = 10


class DatabaseAuthError(DatabaseError):
    exit_code = 10


class DatabaseUnreachableError(DatabaseError):
    exit_code = 11


class PreflightAuthError(DatabaseAuthError):
    exit_code = 10


class PreflightConnectionError(DatabaseUnreachableError):
    exit_code = 11


class DatabaseNotFoundError(DatabaseError):
    exit_code = 12


class DatabasePermissionError(DatabaseError):
    exit_code = 13


class PreflightPermissionError(DatabasePermissionError):
    exit_code = 13


class TargetNotEmptyError(DatabaseError):
    exit_code = 14


class PgToolError(PgautodumperError):
    exit_code = 20


class PgVersionMismatchError(PgToolError):
    exit_code = 20


class DumpFailedError(PgToolError):
    exit_code = 21


class RestoreFailedError(PgToolError):
    exit_code = 22


class StorageError(PgautodumperError):
    exit_code = 30


class BucketNotFoundError(StorageError):
    exit_code = 30


class StorageAccessDeniedError(StorageError):
    exit_code = 31


class BackupNotFoundError(StorageError):
    exit_code = 32


class BackupExistsError(StorageError):
    exit_code = 33


class StorageUnavailableError(StorageError):
    exit_code = 34


class BackupAlreadyRunningError(StorageError):
    exit_code = 35


class SecretError(PgautodumperError):
    exit_code = 40


class SecretNotFoundError(SecretError):
    exit_code = 40


class SecretAccessDeniedError(SecretError):
    exit_code = 41


class SecretMalformedError(SecretError):
    exit_code = 42


class IntegrityError(PgautodumperError):
    exit_code = 50


class ChecksumMismatchError(IntegrityError):
    exit_code = 50


class ManifestError(IntegrityError):
    exit_code = 51


class VerifyMismatchError(IntegrityError):
    exit_code = 52


class NotificationError(PgautodumperError):
    exit_code = 60


class Interrupted(PgautodumperError):
    exit_code = 130


_URL_PASSWORD = re.compile(r"(://[^:/@\s]*:)[^@\s]*@")
_KV_PASSWORD = re.compile(r"(password\s*=\s*)('[^']*'|\S+)", re.IGNORECASE)


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """Remove passwords from text that came from a driver, a tool or a URL."""
    text = _URL_PASSWORD.sub(r"\1***@", text)
    text = _KV_PASSWORD.sub(r"\1***", text)
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text

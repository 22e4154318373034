"""Every failure pgautodumper can report, in one hierarchy.

The class name of each exception is a public name: Step Functions matches it
in ``Retry``/``Catch`` ``ErrorEquals`` (a Lambda's ``errorType`` is the class
name of the exception it raised), and the CLI maps each class to its own exit
code, documented in the README.

    PgautodumperError                      exit 1   anything not classified below
    ├── UnexpectedError                    exit 1   an unclassified exception: a bug
    ├── UsageError                         exit 2   bad flags or flag combinations
    │   └── RequestInvalidError            exit 2   a BackupRequest fails validation
    ├── DatabaseError
    │   ├── DatabaseAuthError              exit 10  password/role rejected
    │   │   └── PreflightAuthError         exit 10  ... found by the preflight check
    │   ├── DatabaseUnreachableError       exit 11  DNS, refused, timeout; the server went away
    │   │   ├── PreflightConnectionError   exit 11  ... found by the preflight check (retryable)
    │   │   └── ConnectionLimitError       exit 25  no session slot free (server, role, database)
    │   ├── DatabaseNotFoundError          exit 12  the database does not exist
    │   ├── DatabasePermissionError        exit 13  the role cannot read some objects
    │   │   ├── PreflightPermissionError   exit 13  ... names every unreadable object
    │   │   ├── RowSecurityError           exit 17  row-level security would hide rows from it
    │   │   └── TargetPermissionError      exit 9   the restorer may not create or drop what it must
    │   ├── TargetNotEmptyError            exit 14  restore target holds objects, no --clean
    │   ├── LockTimeoutError               exit 15  a lock stayed held past the lock wait
    │   ├── MissingRolesError              exit 16  the restore target lacks roles the backup needs
    │   ├── OwnershipError                 exit 18  the restorer may not give objects their owners
    │   ├── MissingExtensionsError         exit 19  the restore target cannot create an extension
    │   ├── MissingTablespacesError        exit 23  the restore target lacks a tablespace
    │   ├── MissingCollationsError         exit 24  the restore target lacks a collation (a locale)
    │   ├── EncodingMismatchError          exit 26  the restore target's encoding cannot hold rows
    │   ├── TargetServerTooOldError        exit 27  the restore target runs an older major
    │   ├── TargetReadOnlyError            exit 28  the restore target is a hot standby
    │   ├── TargetDiskFullError            exit 29  the restore target ran out of disk space
    │   └── SuperuserRequiredError         exit 8   an object only a superuser may create
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
    │   ├── VerifyMismatchError            exit 52  restored row counts differ
    │   └── ObjectMissingError             exit 53  an object the manifest lists is gone
    ├── NotificationError                  exit 60  SNS publish failed (Slack only logs)
    ├── TaskError                          exit 70  a task failed outside our code
    │   ├── TaskStartFailedError           exit 71  never ran: image pull, ENI, secrets, capacity
    │   ├── TaskOutOfMemoryError           exit 72  killed at the memory limit (the task exits 137)
    │   └── TaskTimeoutError               exit 73  ran past task.timeout_seconds
    └── Interrupted                        exit 130 SIGINT/SIGTERM; uploads were aborted

Messages say what failed, for which database or key, and what to try next;
each class's ``next_step`` is what a notification tells the person on call.
The ``Task*`` errors are never raised by a process: they name what ECS
reports about a task (its exit code, stop code and reason). Messages never
contain a password: every message built from a driver or tool error goes
through :func:`redact` first.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

# The next step after a restore failed half-way: what it committed stays.
INCOMPLETE_TARGET = (
    "treat the target database as incomplete: restore again into an empty database, or with --clean"
)


# What to do when the restore target lacks what the backup's objects need: said before
# anything changed, or named from pg_restore's error.
COLLATIONS_HINT = (
    "install the operating system locales on the target server (Debian/Ubuntu: the "
    "locales-all package), import them (SELECT pg_import_system_collations('pg_catalog')), "
    "and restore again; or restore into a server that has them"
)
TABLESPACES_HINT = (
    "restore with --no-tablespaces (everything goes into the database's default tablespace), "
    "or create them on the target first (CREATE TABLESPACE name LOCATION 'directory')"
)


class PgautodumperError(Exception):
    """Base class; ``exit_code`` is the process exit status the CLI uses."""

    exit_code = 1
    # A transient failure: the task tries again (bounded, with backoff) before giving up.
    retryable = False
    # A restore that failed on bytes which matched the manifest (pg_restore's failure, or a
    # cause named from it): the backup's bytes are not in question.
    on_intact_bytes = False
    next_step = (
        "Read the message above and the task's log; run the step again with --debug for details."
    )

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        # One line, always: messages often quote multi-line driver output.
        self.message = " ".join(message.split())
        self.hint = hint
        super().__init__(self.render())

    def render(self) -> str:
        return f"{self.message}; {self.hint}" if self.hint else self.message


class UnexpectedError(PgautodumperError):
    """An exception our code did not classify: a bug, reported as one (never a traceback)."""

    exit_code = 1
    next_step = "This is a bug in pgautodumper: report it with the log (and --debug output)."


class UsageError(PgautodumperError):
    exit_code = 2
    next_step = (
        "Fix the flags or the request named above; 'pgautodumper COMMAND --help' shows them."
    )


class DatabaseError(PgautodumperError):
    exit_code = 10
    next_step = "Check the database named above: that it is running and accepts the backup role."


class DatabaseAuthError(DatabaseError):
    exit_code = 10
    next_step = (
        "Check the user and password (or the secret; a rotation may have failed) and pg_hba.conf."
    )


class DatabaseUnreachableError(DatabaseError):
    exit_code = 11
    retryable = True
    next_step = (
        "Check that the database is running, that security groups allow the task and Lambda "
        "subnets, and that DNS resolves."
    )


class ConnectionLimitError(DatabaseUnreachableError):
    """The server refused a session for lack of a free slot: its max_connections (less
    the reserved ones), the role's CONNECTION LIMIT or the database's. Transient when
    other sessions end, like the other ways of being unreachable."""

    exit_code = 25
    next_step = (
        "Lower --jobs (each job is one connection), end idle sessions, or raise the limit "
        "named above (max_connections, or ALTER ROLE/DATABASE ... CONNECTION LIMIT)."
    )


class PreflightAuthError(DatabaseAuthError):
    exit_code = 10
    next_step = (
        "The database refused the credentials: check the secret's username and password (a "
        "rotation may have failed) and pg_hba.conf."
    )


class PreflightConnectionError(DatabaseUnreachableError):
    exit_code = 11
    next_step = (
        "The database did not answer (after retries): check that it is running, that security "
        "groups allow the Lambda and task subnets, and that DNS resolves."
    )


class DatabaseNotFoundError(DatabaseError):
    exit_code = 12
    next_step = "The database named in the secret or URL does not exist: fix 'dbname'."


class DatabasePermissionError(DatabaseError):
    exit_code = 13
    next_step = (
        "Grant the role what the message names: CONNECT on the database, SELECT on the objects "
        "(or pg_read_all_data) and USAGE on their schemas, or CREATEDB for a verify's scratch role."
    )


class PreflightPermissionError(DatabasePermissionError):
    exit_code = 13
    next_step = (
        "Grant the backup role SELECT on the tables, sequences and large objects named above "
        "(or pg_read_all_data) and USAGE on their schemas."
    )


class RowSecurityError(DatabasePermissionError):
    exit_code = 17
    next_step = (
        "Row-level security would hide rows from the backup role, and a backup holds every row "
        "or none (as pg_dump): give the role BYPASSRLS (ALTER ROLE ... BYPASSRLS), or back up as "
        "the tables' owner where they do not FORCE ROW LEVEL SECURITY."
    )


class TargetPermissionError(DatabasePermissionError):
    """The restoring role may not create objects where the backup puts them: in the
    database (new schemas) or in a schema of the target (on PostgreSQL 15 and later only
    the database's owner may create in ``public`` unless granted); or, with --clean, may
    not drop an object of the target that another role owns. Exit 9, beside 8: the
    database family's codes (10-29) are all taken."""

    exit_code = 9
    next_step = (
        "Restore as the target database's owner or a superuser, or have the owner GRANT the "
        "restoring role CREATE on the database and the schemas named above."
    )


_PSQL_SCRIPT_LINE = re.compile(r"^psql:<stdin>:\d+: ")


def row_security_refusal(stderr: str) -> str | None:
    """The line of a tool's stderr tail (lines joined by " | ") where row-level security
    refused it: tools pass on the server's words only, not its SQLSTATE. (Any other
    refusal stays the tool's failure, ``DumpFailedError``, quoting the server.)"""
    for line in stderr.split(" | "):
        if "row-level security" in line:
            return _PSQL_SCRIPT_LINE.sub("", line.strip())
    return None


def read_denied(detail: str, *, what: str, role: str | None = None) -> DatabasePermissionError:
    """The named error for a server that refused the backup role ``what``.

    ``detail`` is the server's (redacted) words: with row_security off, as pg_dump
    sets it, a policy raises "query would be affected by row-level security
    policy" (SQLSTATE 42501, like a missing GRANT) instead of hiding rows.
    """
    who = f"role {role!r}" if role else "the backup role"
    if "row-level security" in detail:
        return RowSecurityError(
            f"row-level security would hide rows of {what} from {who}: {detail}",
            hint=f"ALTER ROLE {role or '<backup role>'} BYPASSRLS (run 'pgautodumper preflight' "
            "to list every such table)",
        )
    return DatabasePermissionError(
        f"{who} cannot read {what}: {detail}",
        hint=f"grant SELECT on it to {role or 'the backup role'}, or pg_read_all_data "
        "(run 'pgautodumper preflight' to list every unreadable object)",
    )


class TargetNotEmptyError(DatabaseError):
    exit_code = 14
    next_step = "Restore into an empty database, or pass --clean to drop and replace the objects."


class LockTimeoutError(DatabaseError):
    """A session (a migration, usually) held or queued a lock that blocks the dump's
    ACCESS SHARE lock on a table, or a restore's statement, for longer than
    ``lock_wait_timeout_seconds``."""

    exit_code = 15
    next_step = (
        "A session named above kept a table locked (a migration? an open transaction?): let "
        "it finish or end it, then run the backup or restore again; or raise "
        "lock_wait_timeout_seconds (--lock-wait-timeout)."
    )


class MissingRolesError(DatabaseError):
    """The restore target lacks roles that the backup's objects are owned by or granted to."""

    exit_code = 16
    next_step = (
        "Restore with --with-roles (creates the missing roles, without passwords) or "
        "--no-owner (restores without owners and grants)."
    )


class MissingExtensionsError(DatabaseError):
    """The restore target's server cannot create extensions the backup uses: their
    packages are not installed there."""

    exit_code = 19
    next_step = (
        "Install the extensions named above on the target server, or restore into a server "
        "that has them; nothing was restored."
    )


class MissingTablespacesError(DatabaseError):
    """The restore target's server lacks tablespaces the backup's tables or indexes are
    in (a new server usually)."""

    exit_code = 23  # 10-19 are taken: the next free codes
    next_step = (
        "Restore with --no-tablespaces (everything goes into the database's default "
        "tablespace), or create the tablespaces named above on the target first."
    )


class MissingCollationsError(DatabaseError):
    """The restore target's server lacks collations the backup's columns or indexes use:
    initdb makes them from the operating system's locales, which differ between servers."""

    exit_code = 24
    next_step = (
        "Install the locales named above on the target server and import them (SELECT "
        "pg_import_system_collations('pg_catalog')), or restore into a server that has them."
    )


class EncodingMismatchError(DatabaseError):
    """The restore target's database has another encoding than the backup's, and some
    rows cannot be converted to it. An encoding is chosen when a database is created,
    and a restore cannot change it."""

    exit_code = 26
    next_step = (
        "Create the target database with the backup's encoding (CREATE DATABASE ... TEMPLATE "
        "template0 ENCODING '...', named above) and restore into it."
    )


class TargetServerTooOldError(DatabaseError):
    """The restore target's server is of an older major version than the server the
    backup was taken from. PostgreSQL only promises that a dump loads into the same or a
    newer major (pg_dump's documentation, Notes), and pg_restore 17 and later send
    settings older servers do not know before anything else."""

    exit_code = 27
    next_step = (
        "Restore into a server of the backup's major version or newer (the major is named "
        "above); for an older server, `pgautodumper export` writes the backup as SQL, which "
        "you can adapt."
    )


class TargetReadOnlyError(DatabaseError):
    """The restore target is a hot standby: every transaction there is read-only, and
    nothing can be restored into it."""

    exit_code = 28
    next_step = "Restore into the primary (it replicates to its standbys), or a writable server."


class TargetDiskFullError(DatabaseError):
    """The restore target's server ran out of disk space (ENOSPC) while writing."""

    exit_code = 29
    next_step = (
        "Grow the target server's storage (the backup's size is named above; tables and "
        "their indexes take more than that), then restore again into an empty database or "
        "with --clean; for the verify task, raise the module's verify_ephemeral_storage_gib."
    )


class SuperuserRequiredError(DatabaseError):
    """The backup holds an object that only a superuser may create on the restore target:
    an event trigger, a subscription (15; 16 and later: pg_create_subscription), a
    foreign-data wrapper, a C function, a text search parser or template, an operator
    family. Exit 8 because the database family's codes (10-29) are all taken."""

    exit_code = 8
    next_step = (
        "Restore as a superuser (on RDS and Aurora, the master user, where the service allows "
        "the object named above), or drop that object from the source if nothing needs it; "
        "the target is incomplete: restore again into an empty database or with --clean."
    )


class OwnershipError(DatabaseError):
    """The restoring role may not give objects to the roles that own them in the backup:
    ALTER ... OWNER TO (and ALTER DEFAULT PRIVILEGES FOR ROLE) need membership in them."""

    exit_code = 18
    next_step = (
        "Restore as a superuser, or as a member of the roles named (GRANT role TO the restoring "
        "role), or with --no-owner (restores without owners and grants)."
    )


class PgToolError(PgautodumperError):
    exit_code = 20
    next_step = "Check the PostgreSQL client tools in the task image (task_image/Dockerfile)."


class PgVersionMismatchError(PgToolError):
    exit_code = 20
    next_step = (
        "Add a pg_dump/pg_restore of the server's major version to the task image "
        "(task_image/Dockerfile)."
    )


class DumpFailedError(PgToolError):
    exit_code = 21
    next_step = (
        "pg_dump or the upload failed and nothing was stored: read the dump task's log (linked "
        "above), fix the cause and run the backup again."
    )


class RestoreFailedError(PgToolError):
    exit_code = 22
    on_intact_bytes = True
    next_step = (
        "pg_restore failed and the target is incomplete: read the message and the task's log; "
        "for a verify, the backup may depend on something the scratch server lacks."
    )


class StorageError(PgautodumperError):
    exit_code = 30
    next_step = "Check the bucket, the prefix and the role's S3 permissions."


class BucketNotFoundError(StorageError):
    exit_code = 30
    next_step = "Check the bucket name in the request (or --bucket) and the region."


class StorageAccessDeniedError(StorageError):
    exit_code = 31
    next_step = (
        "Check the S3 permissions of the role that failed (IAM policy, bucket policy, KMS key "
        "policy) for the key named above."
    )


class BackupNotFoundError(StorageError):
    exit_code = 32
    next_step = "'pgautodumper list --bucket B --name N' shows the complete backups."


class BackupExistsError(StorageError):
    exit_code = 33
    next_step = (
        "This run's key already exists and is never overwritten: start a new execution (a new "
        "run id)."
    )


class StorageUnavailableError(StorageError):
    exit_code = 34
    retryable = True
    next_step = (
        "S3 was unreachable or failing after retries: the next scheduled run will try again; "
        "check the VPC endpoint or NAT if it persists."
    )


class BackupAlreadyRunningError(StorageError):
    exit_code = 35
    next_step = (
        "Another execution of this backup holds the lock: if it is stuck, stop it in the Step "
        "Functions console and the lock is taken over."
    )


class SecretError(PgautodumperError):
    exit_code = 40
    next_step = (
        "Check the secret named above: its ARN, region and the role's "
        "secretsmanager:GetSecretValue permission."
    )


class SecretNotFoundError(SecretError):
    exit_code = 40
    next_step = "Check the secret ARN in the schedule's input and its region."


class SecretAccessDeniedError(SecretError):
    exit_code = 41
    next_step = (
        "Grant the role secretsmanager:GetSecretValue on the secret (and kms:Decrypt on its key)."
    )


class SecretMalformedError(SecretError):
    exit_code = 42
    next_step = "Store the secret in the RDS format: host, port, username, password, dbname."


class IntegrityError(PgautodumperError):
    exit_code = 50
    next_step = "Do not trust this backup: restore an older one and take a new backup."


class ChecksumMismatchError(IntegrityError):
    exit_code = 50
    next_step = (
        "The stored bytes differ from the manifest: the backup is corrupt. Restore an older "
        "backup, take a new one, and investigate the bucket (who wrote to it)."
    )


class ManifestError(IntegrityError):
    exit_code = 51
    next_step = (
        "The manifest is missing or fails its checks: do not trust this backup; read the dump "
        "task's log and take a new backup."
    )


class VerifyMismatchError(IntegrityError):
    exit_code = 52
    next_step = (
        "The restored data differs from the manifest: do not rely on this backup; take a new "
        "backup and compare the tables named above."
    )


class ObjectMissingError(IntegrityError):
    """An object the backup's manifest lists is no longer in the bucket: deleted since the
    backup completed (the manifest is written last, after every object)."""

    exit_code = 53
    next_step = (
        "Do not trust this backup: restore an older one ('pgautodumper list' marks this one "
        "MISSING-OBJECTS). Find what deleted the object (a lifecycle rule shorter than the "
        "retention? CloudTrail names who) and protect the bucket with Object Lock."
    )


class NotificationError(PgautodumperError):
    exit_code = 60
    next_step = (
        "Check the SNS topic ARN and that the role may sns:Publish to it (and the topic's KMS "
        "key policy)."
    )


class Interrupted(PgautodumperError):
    exit_code = 130
    next_step = "The run was stopped before it finished and nothing partial was kept: run it again."


class RequestInvalidError(UsageError):
    """A BackupRequest (an execution input) that fails validation: the run stops at its start."""

    exit_code = 2
    next_step = (
        "Fix the schedule's input (the BackupRequest) as the message says; "
        "schema/backup-request.schema.json describes every field."
    )


class TaskError(PgautodumperError):
    """A Dump or Verify task that failed outside pgautodumper's own code (ECS, Fargate)."""

    exit_code = 70
    next_step = "Read the task's log (linked above) and ECS's stop reason in the cause."


class TaskStartFailedError(TaskError):
    """The task never ran: image pull, ENI or secrets initialisation, capacity."""

    exit_code = 71
    next_step = (
        "The task never started: check the image URI and that the subnets reach ECR, S3 and "
        "CloudWatch Logs (NAT or VPC endpoints), and Fargate capacity in the region."
    )


class TaskOutOfMemoryError(TaskError):
    """The container was killed for using more memory than the task has (exit 137)."""

    exit_code = 72
    next_step = "Raise task.memory in the request (or task_defaults.memory in Terraform)."


class TaskTimeoutError(TaskError):
    """The task ran longer than task.timeout_seconds; Step Functions stopped it."""

    exit_code = 73
    next_step = (
        "Raise task.timeout_seconds in the request, or give the task more CPU (task.cpu) "
        "so that more jobs run in parallel."
    )


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


def error_classes() -> list[type[PgautodumperError]]:
    """Every named error, depth first from the root (the public names)."""
    found: list[type[PgautodumperError]] = []
    todo: list[type[PgautodumperError]] = [PgautodumperError]
    while todo:
        cls = todo.pop(0)
        found.append(cls)
        todo.extend(cls.__subclasses__())
    return found


def by_name(name: str) -> type[PgautodumperError] | None:
    """The class whose name an ASL ``ErrorEquals`` or a Lambda ``errorType`` carries."""
    return next((cls for cls in error_classes() if cls.__name__ == name), None)


def by_exit_code(code: int) -> type[PgautodumperError] | None:
    """The error a process exit code stands for; preflight-only classes never exit a task."""
    for cls in error_classes():
        if (
            cls.exit_code == code
            and not cls.__name__.startswith("Preflight")
            and cls.__name__ not in _SHARED_CODES
        ):
            return cls
    return None


# Parents that share their code with a more specific child: the child is what a task exits with.
_SHARED_CODES = {
    "PgautodumperError",
    "DatabaseError",
    "PgToolError",
    "StorageError",
    "SecretError",
    "IntegrityError",
    "RequestInvalidError",
    "TaskError",
}

# Names that AWS raises and no class here stands for (Step Functions, Lambda, ECS).
_AWS_NEXT_STEPS = {
    "States.Timeout": "A state ran past its timeout: open the execution and read which one.",
    "States.Permissions": "The state machine's role lacks a permission: see the cause.",
    "States.Runtime": "The state machine met an invalid path or payload: see the cause.",
    "States.TaskFailed": "The task failed: read its log (CloudWatch Logs) and the cause above.",
}


def next_step_for(name: str) -> str:
    """What to do about an error by its public name (our classes, then AWS's own names)."""
    cls = by_name(name)
    if cls is not None:
        return cls.next_step
    if name.startswith(("Lambda.", "ECS.", "AmazonECS.")):
        return "AWS could not run the step (a service error or throttling): see the cause."
    return _AWS_NEXT_STEPS.get(name, PgautodumperError.next_step)

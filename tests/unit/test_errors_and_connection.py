from datetime import UTC, datetime

import psycopg
import pytest
from botocore.exceptions import ClientError

from pgautodumper import errors, storage
from pgautodumper.connection import ConnectionInfo, classify_connect_error
from pgautodumper.database_locale import DatabaseLocale
from pgautodumper.manifest import Compression, Manifest, parse_manifest
from pgautodumper.pgtools import find_tool, installed
from pgautodumper.restore import named_cause
from pgautodumper.secrets import parse_secret


def test_exit_codes_are_distinct_for_leaf_errors():
    leaves = [
        cls
        for cls in vars(errors).values()
        if isinstance(cls, type)
        and issubclass(cls, errors.PgautodumperError)
        and not cls.__subclasses__()
    ]
    codes = [cls.exit_code for cls in leaves]
    assert len(codes) == len(set(codes)), sorted(codes)


def test_every_error_class_is_documented_in_the_module_docstring():
    for name, cls in vars(errors).items():
        if isinstance(cls, type) and issubclass(cls, errors.PgautodumperError):
            assert name in errors.__doc__, name


def test_redact_removes_passwords_from_urls_and_conninfo():
    text = "postgresql://u:hunter2@h/db failed; host=h password=hunter2 user=u"
    assert "hunter2" not in errors.redact(text)
    assert errors.redact("x s3cr3t y", ["s3cr3t"]) == "x *** y"


def test_url_password_goes_to_the_environment_not_params():
    info = ConnectionInfo.from_url(
        "postgresql://alice:p%40ss@db.example:6543/orders?sslmode=require"
    )
    assert "password" not in info.params
    env = info.libpq_env()
    assert env["PGPASSWORD"] == "p@ss" and env["PGHOST"] == "db.example"
    assert (
        env["PGPORT"] == "6543" and env["PGSSLMODE"] == "require" and env["PGDATABASE"] == "orders"
    )
    assert "p@ss" not in repr(info) and "p@ss" not in info.describe()


def test_malformed_secret_names_keys_not_values():
    with pytest.raises(errors.SecretMalformedError) as caught:
        parse_secret('{"username": "u", "password": "topsecret"}', arn="arn:s", version_id="v")
    assert "host" in str(caught.value) and "topsecret" not in str(caught.value)
    with pytest.raises(errors.SecretMalformedError, match="not JSON"):
        parse_secret("topsecret", arn="arn:s", version_id="v")


def test_manifest_of_unknown_version_is_refused():
    with pytest.raises(errors.ManifestError, match="format_version 3; this pgautodumper reads"):
        parse_manifest(b'{"format_version": 3}', "k")
    for known in (1, 2):
        with pytest.raises(errors.ManifestError, match="incomplete or invalid"):
            parse_manifest(b'{"format_version": %d}' % known, "k")


def test_the_installed_pg_dump_is_found_and_a_future_server_is_refused():
    tools = installed("pg_dump")
    assert tools, "PostgreSQL client tools are required for the tests"
    newest = tools[-1]
    assert find_tool("pg_dump", newest.major).major == newest.major
    with pytest.raises(errors.PgVersionMismatchError, match=f"PostgreSQL {newest.major + 1}"):
        find_tool("pg_dump", newest.major + 1)


def test_every_error_class_has_its_own_next_step():
    """What a notification tells the person on call lives with the class, for every class."""
    for cls in errors.error_classes():
        step = cls.__dict__.get("next_step")
        assert isinstance(step, str) and len(step) > 20, f"{cls.__name__} has no next step"


def test_exit_codes_map_back_to_the_error_a_task_exits_with():
    for cls in errors.error_classes():
        found = errors.by_exit_code(cls.exit_code)
        if cls.__subclasses__() or cls.__name__.startswith("Preflight") or cls.exit_code == 1:
            continue
        # A task's bad input exits 2 whichever way it was bad: the parent names it.
        expected = errors.UsageError if cls is errors.RequestInvalidError else cls
        assert found is expected, (cls.__name__, found)
    assert errors.by_exit_code(31) is errors.StorageAccessDeniedError
    assert errors.by_exit_code(52) is errors.VerifyMismatchError
    assert errors.by_exit_code(99) is None


def test_next_steps_for_our_names_and_aws_names():
    assert errors.next_step_for("LockTimeoutError") == errors.LockTimeoutError.next_step
    assert "timeout" in errors.next_step_for("States.Timeout")
    assert errors.next_step_for("Lambda.ServiceException")
    assert errors.next_step_for("SomethingNew") == errors.PgautodumperError.next_step


def test_only_transient_errors_are_retried():
    retryable = {cls.__name__ for cls in errors.error_classes() if cls.retryable}
    # A connection limit is transient too: other sessions end.
    assert retryable == {
        "DatabaseUnreachableError", "PreflightConnectionError", "ConnectionLimitError",
        "StorageUnavailableError",
    }  # fmt: skip


def _manifest(**fields) -> Manifest:
    now = datetime(2026, 11, 29, tzinfo=UTC)
    return Manifest(
        name="app", database="app", run_id="r", dump_key="app/x.dump.zst",
        manifest_key="app/x.manifest.json", stored_bytes=1, raw_bytes=3 * 2**30, parts=1,
        part_size_bytes=1, sha256="0" * 64, compression=Compression(level=1, threads=1),
        pg_dump_version="15.18", server_version="15.18", server_version_num=150018,
        snapshot="s", started_at=now, finished_at=now, duration_seconds=1.0,
        tool_version="t", tables=[], **fields,
    )  # fmt: skip


# pg_restore's words, as real servers said them (seen in probes against PostgreSQL 15).
FAILED = "restore of app/x.dump.zst into t failed: pg_restore exited with code 1: "
TARGET = ConnectionInfo.from_url("postgresql://u@h/t")


@pytest.mark.parametrize(
    ("said", "named", "words"),
    [
        (
            'COPY failed for table "big": ERROR: could not extend file "base/16394/16395": '
            "No space left on device | HINT: Check free disk space.",
            errors.TargetDiskFullError,
            "holds 3.00 GiB before indexes",
        ),
        (
            'COPY failed for table "big": ERROR: character with byte sequence 0xe6 0x97 0xa5 '
            'in encoding "UTF8" has no equivalent in encoding "LATIN1"',
            errors.EncodingMismatchError,
            "ENCODING 'UTF8'",
        ),
        (
            'ERROR: collation "C.utf8" for encoding "LATIN1" does not exist',
            errors.EncodingMismatchError,
            "is a LATIN1 database",
        ),
        (
            'ERROR: permission denied to create extension "postgres_fdw" | HINT: Must be '
            "superuser to create this extension.",
            errors.MissingExtensionsError,
            "may not create extension 'postgres_fdw'",
        ),
        # Superuser-only objects, as 15 and 18 refuse them to a database owner.
        (
            'ERROR: permission denied to create event trigger "et" | HINT: Must be superuser '
            "to create an event trigger.",
            errors.SuperuserRequiredError,
            "create event trigger 'et'",
        ),
        (
            "ERROR: must be superuser to create subscriptions",
            errors.SuperuserRequiredError,
            "create subscriptions",
        ),
        (
            "ERROR: permission denied to create subscription | DETAIL: Only roles with "
            'privileges of the "pg_create_subscription" role may create subscriptions.',
            errors.SuperuserRequiredError,
            "create a subscription",
        ),
        (
            "ERROR: permission denied for language c",
            errors.SuperuserRequiredError,
            "functions in language c",
        ),
        (
            'ERROR: permission denied to create foreign-data wrapper "w" | HINT: Must be '
            "superuser to create a foreign-data wrapper.",
            errors.SuperuserRequiredError,
            "foreign-data wrapper 'w'",
        ),
        (
            "ERROR: must be superuser to create text search parsers",
            errors.SuperuserRequiredError,
            "create text search parsers",
        ),
        (
            "ERROR: must be superuser to create an operator family",
            errors.SuperuserRequiredError,
            "create an operator family",
        ),
    ],
)
def test_a_cause_pg_restore_states_is_named(said, named, words):
    utf8 = DatabaseLocale(encoding="UTF8", lc_collate="C.utf8", lc_ctype="C.utf8")
    failure = errors.RestoreFailedError(FAILED + said)
    cause = named_cause(failure, TARGET, _manifest(database_locale=utf8))
    assert isinstance(cause, named), cause
    assert words in str(cause)


# libpq's words for a refused session (PostgreSQL 15 and 18 alike; probes of both).
AT = 'connection failed: connection to server at "127.0.0.1", port 5432 failed: FATAL:  '


@pytest.mark.parametrize(
    ("said", "named", "words"),
    [
        (
            'pg_hba.conf rejects connection for host "127.0.0.1", user "app", database "db", '
            "no encryption",
            errors.DatabaseAuthError,
            "by pg_hba.conf",
        ),
        (
            'no pg_hba.conf entry for host "10.0.0.5", user "app", database "db", no encryption',
            errors.DatabaseAuthError,
            "sslmode=require",
        ),
        ('role "app" does not exist', errors.DatabaseAuthError, "create role app"),
        (
            'permission denied for database "db"\nDETAIL:  User does not have CONNECT privilege.',
            errors.DatabasePermissionError,
            "CONNECT privilege",  # the DETAIL line is kept
        ),
        ("the database system is starting up", errors.DatabaseUnreachableError, "is starting up"),
        (
            "the database system is not accepting connections\nDETAIL:  Hot standby mode is "
            "disabled.",
            errors.DatabaseUnreachableError,
            "Hot standby mode is disabled",
        ),
        (
            "Connection refused\n\tIs the server running on that host and accepting TCP/IP "
            "connections?",
            errors.DatabaseUnreachableError,
            "check host, port",
        ),
    ],
)
def test_a_refused_session_is_named_from_the_servers_words(said, named, words):
    found = classify_connect_error(psycopg.OperationalError(AT + said), TARGET)
    assert type(found) is named, found
    assert words in str(found) and "\n" not in str(found)


@pytest.mark.parametrize(
    ("code", "said", "words"),
    [
        ("ExpiredToken", "The provided token has expired.", "credentials expired"),
        (
            "RequestTimeTooSkewed",
            "The difference between the request time and the current time is too large.",
            "clock",
        ),
        (
            "KMS.KMSInvalidStateException",
            "arn:aws:kms:...:key/1 is pending deletion.",
            "cancel-key-deletion",
        ),
        (
            "AccessDenied",
            "User: arn:aws:sts::1:assumed-role/task is not authorized to perform: "
            "kms:GenerateDataKey on resource: arn:aws:kms:...:key/1",
            "kms:GenerateDataKey",
        ),
    ],
)
def test_refusals_s3_explains_name_their_cause(code, said, words):
    """An expired token, a skewed clock and the bucket's KMS key (disabled, pending
    deletion: the worst day's first sign) are access errors with their own next step."""
    refused = ClientError({"Error": {"Code": code, "Message": said}}, "PutObject")
    found = storage.storage_error(refused, bucket="b", key="app/x.dump.zst", action="write")
    assert type(found) is errors.StorageAccessDeniedError, found
    assert words in str(found) and "s3://b/app/x.dump.zst" in str(found)

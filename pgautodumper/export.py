"""Export: a backup of either format as one plain SQL script, like ``pg_dump --format=plain``.

No lock-in: ``pgautodumper export ... | psql -v ON_ERROR_STOP=1 --single-transaction``
loads it into an empty database with nothing but psql.

    (both)     SET array_nulls = on (pg_restore's own header leaves it to the database)
    format 1   pg_restore -f - of the checked stream
    format 2   pg_restore -f - --section=pre-data (schema archive, checked first)
               pg_restore -f - of the remaining-data archive (checked stream)
               per part: COPY schema.table (columns) FROM stdin; its rows; \\.
               pg_restore -f - --section=post-data

Every object's sha256 and sizes are checked against the manifest, as a
restore checks them. But bytes written to stdout cannot be taken back: when an
object turns out corrupt after part of it was written (or anything else fails
once output began: S3, pg_restore, a signal), the script is ended with lines
no loader accepts — a COPY row with more columns than any table can have (so
the COPY in progress fails as a whole and none of its rows stay), then ``\\.``
and a statement that is a syntax error naming the problem — and the export
fails with its named error (ChecksumMismatchError, exit 50, for corrupt bytes),
saying the output is unusable. Nothing after the failure is written (no
post-data), so even a psql run without ON_ERROR_STOP cannot mistake it for a
complete database.
"""

from __future__ import annotations

import codecs
import contextlib
import logging
import os
import signal
import subprocess
import tempfile
import threading
from pathlib import Path
from typing import BinaryIO

from pydantic import BaseModel

from pgautodumper import catalog, layout, toc
from pgautodumper.checked import CheckedObject, listed_object
from pgautodumper.child import ToolProcess
from pgautodumper.errors import ChecksumMismatchError, PgautodumperError, RestoreFailedError
from pgautodumper.manifest import Manifest, ManifestV2, TablePart
from pgautodumper.parallel_restore import feed, fetch_schema_archive
from pgautodumper.pgtools import find_tool, leave_out_flags
from pgautodumper.restore import feed_dump

log = logging.getLogger(__name__)

# More fields than any table has columns (at most 1,600): the COPY in progress fails.
_POISON_FIELDS = 1700
_UNUSABLE = (
    "the SQL already written to stdout is incomplete and ends with lines that make it fail "
    "if loaded: discard it"
)


class ExportResult(BaseModel):
    dump_key: str
    format_version: int
    objects: int
    stored_bytes: int


def export(
    bucket: str,
    keys: layout.BackupKeys,
    out: BinaryIO,
    *,
    no_owner: bool = False,
    no_tablespaces: bool = False,
) -> ExportResult:
    """Write the backup to ``out`` (a binary file with a file descriptor) as SQL."""
    manifest = catalog.read_manifest(bucket, keys)
    catalog.require_objects(bucket, keys, manifest)
    pg_restore = str(find_tool("pg_restore", int(manifest.pg_dump_version.split(".")[0])).path)
    flags = leave_out_flags(no_owner=no_owner, no_tablespaces=no_tablespaces)
    script = _Script(out, pg_restore, flags)
    try:
        if isinstance(manifest, ManifestV2):
            with tempfile.TemporaryDirectory(prefix="pgad-export-") as workdir:
                _export_format2(bucket, manifest, script, Path(workdir))
            objects = len(manifest.objects())
        else:
            _export_format1(bucket, keys, manifest, script)
            objects = 1
    except BrokenPipeError:
        raise  # stdout is gone: nothing more can be written to it
    except BaseException as exc:
        raise _unusable(script, exc) from None
    log.info("exported %s (%d object(s), sha256 checked)", manifest.dump_key, objects)
    return ExportResult(
        dump_key=manifest.dump_key,
        format_version=manifest.format_version,
        objects=objects,
        stored_bytes=manifest.stored_bytes,
    )


# Before pg_restore's own header, which does not set it: a database where the script is
# loaded may have array_nulls off, and a NULL element of a text[] would load as 'NULL'.
_PREAMBLE = b"-- pgautodumper export\nSET array_nulls = on;\n\n"


class _Script:
    """The output: our own writes and pg_restore's, in order, on one file descriptor."""

    def __init__(self, out: BinaryIO, pg_restore: str, flags: list[str]) -> None:
        self.out, self.pg_restore, self.flags = out, pg_restore, flags
        self.started = False  # once anything may have reached stdout

    def _begin(self) -> None:
        if not self.started:
            self.started = True
            self.out.write(_PREAMBLE)
        self.out.flush()

    def write(self, data: bytes) -> None:
        self._begin()
        self.out.write(data)

    def pg_restore_file(self, archive: Path, section: str) -> None:
        self._begin()
        argv = [self.pg_restore, "-f", "-", f"--section={section}", *self.flags, str(archive)]
        process = ToolProcess(argv, dict(os.environ), stdout=self.out.fileno())
        if process.wait() != 0:
            raise _tool_failed(process, archive.name)

    def pg_restore_stream(self, *section: str) -> ToolProcess:
        self._begin()
        argv = [self.pg_restore, "-f", "-", *section, *self.flags]
        return ToolProcess(argv, dict(os.environ), stdin=subprocess.PIPE, stdout=self.out.fileno())

    def poison(self, reason: str) -> None:
        """End the script so that loading it fails (see the module docstring)."""
        self.out.flush()
        line = "\t" * _POISON_FIELDS + "pgautodumper: corrupt backup"
        statement = f"pgautodumper export is incomplete and must not be loaded: {reason};"
        self.out.write(f"\n{line}\n\\.\n{statement}\n".encode(errors="replace"))
        self.out.flush()


def _export_format1(
    bucket: str, keys: layout.BackupKeys, manifest: Manifest, script: _Script
) -> None:
    process = script.pg_restore_stream()
    try:
        fed = feed_dump(process, listed_object(bucket, keys.dump, "the dump"), manifest)
    except BaseException:
        process.kill()
        raise
    if process.wait() != 0 or not fed:
        raise _tool_failed(process, keys.dump)


def _export_format2(bucket: str, manifest: ManifestV2, script: _Script, workdir: Path) -> None:
    # Checked before a byte is written: a corrupt schema archive leaves stdout empty.
    schema = fetch_schema_archive(bucket, manifest, workdir / "schema.dump")
    encoding = toc.encoding(script.pg_restore, schema, dict(os.environ), workdir / "none.list")
    script.pg_restore_file(schema, "pre-data")
    process = script.pg_restore_stream("--section=data")
    source = CheckedObject(
        bucket, manifest.data_archive, f"the remaining-data archive of {manifest.database}"
    )
    try:
        fed = feed(process, source, threading.Event())
    except BaseException:
        process.kill()
        raise
    finally:
        source.close()
    if process.wait() != 0 or not fed:
        raise _tool_failed(process, manifest.data_archive.key)
    script.write(_settings(encoding))
    for number, part in enumerate(manifest.parts, 1):
        _write_part(bucket, part, number, script, _codec(encoding))
    script.pg_restore_file(schema, "post-data")
    script.out.flush()


def _settings(encoding: str) -> bytes:
    """The settings the parts' COPY text was written under (they decide how it reads back)."""
    return (
        "\n--\n-- pgautodumper: the tables streamed by COPY\n--\n\n"
        f"SET client_encoding = '{encoding}';\n"
        "SET DateStyle = 'ISO';\nSET IntervalStyle = 'postgres';\n\n"
    ).encode()


def _write_part(bucket: str, part: TablePart, number: int, script: _Script, codec: str) -> None:
    columns = f" ({', '.join(map(_quote, part.columns))})" if part.columns else ""  # as loader.py
    header = f"COPY {_quote(part.schema_name)}.{_quote(part.table)}{columns} FROM stdin;\n"
    script.write(header.encode(codec, errors="strict"))
    source = CheckedObject(bucket, part, f"part {number} of table {part.qualified}")
    try:
        for chunk in source.decompressed():
            script.write(chunk)
        source.finish()
    finally:
        source.close()
    script.write(b"\\.\n\n")


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _codec(encoding: str) -> str:
    """Python's codec for a PostgreSQL encoding name (names travel in the script's encoding)."""
    name = encoding.upper()
    candidates = {"UTF8": "utf-8", "SQL_ASCII": "utf-8"}.get(name) or name.replace("WIN", "CP")
    try:
        return codecs.lookup(candidates).name
    except LookupError:
        return "utf-8"


def _unusable(script: _Script, exc: BaseException) -> BaseException:
    """``exc``, once the script written so far was ended so that loading it fails."""
    if not script.started:
        return exc  # nothing written: stdout is empty
    reason = exc.message if isinstance(exc, PgautodumperError) else type(exc).__name__
    with contextlib.suppress(OSError, ValueError):
        script.poison(reason)
    if isinstance(exc, ChecksumMismatchError):
        return ChecksumMismatchError(f"{exc.message}; {_UNUSABLE}", hint="export an older backup")
    if isinstance(exc, PgautodumperError):
        return type(exc)(f"{exc.message}; {_UNUSABLE}", hint=exc.hint)
    return exc


def _tool_failed(process: ToolProcess, what: str) -> Exception:
    if process.process.returncode == -signal.SIGPIPE:
        return BrokenPipeError(f"pg_restore's output for {what} was closed")
    return RestoreFailedError(
        f"export of {what} failed: {process.failure()}",
        hint="the SQL written to stdout is incomplete: discard it",
    )

"""The ``pgautodumper`` command: one module per verb, errors handled here once.

Every expected failure is a :class:`PgautodumperError`: one line on stderr and
its own exit code (see errors.py). ``--debug`` adds the traceback.
"""

from __future__ import annotations

import importlib
import logging
import os
import signal
import sys
import traceback
from types import FrameType

import click

from pgautodumper import __version__
from pgautodumper.errors import Interrupted, PgautodumperError, UnexpectedError, UsageError

# Each verb's module and its one-line summary (the first line of its docstring;
# tests/unit/test_cli_startup.py keeps them equal). A verb's module is imported
# only when that verb runs: boto3, psycopg and pydantic cost 0.5 s of start-up
# that --help and --version must not pay.
COMMANDS = {
    "backup": "Dump a database to S3: parallel COPY streams and pg_dump, zstd, manifest last.",
    "restore": "Restore a backup, checking every object's sha256 while streaming.",
    "export": "Write a backup (either format) to stdout as plain SQL, like pg_dump --format=plain.",
    "verify": "Prove a backup restores: row counts must equal the manifest's.",
    "list": "Complete backups of NAME (with --all, incomplete leftovers too).",
    "status": "One row per backup name: last backup, last verify, size trend, state.",
    "preflight": "Check that a scheduled backup of this database would work.",
    "prune": "Delete the backups of NAME that no keep rule keeps (GFS, as restic defines it).",
    "local-run": "Run the real state machine, Lambdas and dump task locally (moto, no Docker).",
}


class _LazyGroup(click.Group):
    """Lists the verbs from COMMANDS; imports a verb's module only to run it."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in COMMANDS:
            return None
        module = importlib.import_module(f"pgautodumper.cli.{cmd_name.replace('-', '_')}")
        return module.command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        limit = formatter.width - 6 - max(len(name) for name in COMMANDS)
        rows = [(name, click.utils.make_default_short_help(summary, limit))
                for name, summary in COMMANDS.items()]  # fmt: skip
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(
    cls=_LazyGroup,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.option("--debug", is_flag=True, envvar="PGAUTODUMPER_DEBUG", help="Show tracebacks.")
@click.option("-q", "--quiet", is_flag=True, help="Only errors on stderr.")
@click.version_option(__version__, prog_name="pgautodumper")
def cli(debug: bool, quiet: bool) -> None:
    """Scheduled, verified PostgreSQL backups to S3.

    AWS endpoint, region and credentials come from the standard AWS
    environment (AWS_ENDPOINT_URL, AWS_REGION, AWS_PROFILE, ...); database
    defaults from the PG* environment.
    """
    logging.basicConfig(
        level=logging.WARNING if quiet else logging.INFO,
        format="pgautodumper: %(message)s",
        stream=sys.stderr,
    )
    for noisy in ("botocore", "boto3", "urllib3", "s3transfer"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # psycopg warns, with object reprs, about cleanups after a lost connection: the
    # error that lost it is what we report.
    logging.getLogger("psycopg").setLevel(logging.ERROR)


class _Terminated(BaseException):
    """Raised by the SIGTERM handler; a BaseException (like KeyboardInterrupt) so
    that no library's ``except Exception`` can swallow it mid-upload."""


def _terminate(signum: int, _frame: FrameType | None) -> None:
    raise _Terminated(signal.Signals(signum).name)


def _debug_requested(argv: list[str]) -> bool:
    return "--debug" in argv or os.environ.get("PGAUTODUMPER_DEBUG", "") not in ("", "0")


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    signal.signal(signal.SIGTERM, _terminate)
    try:
        cli.main(args=args, prog_name="pgautodumper", standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(UsageError.exit_code)
    except (KeyboardInterrupt, click.exceptions.Abort):
        _fail(Interrupted("stopped by SIGINT", hint="nothing partial was kept"), args)
    except _Terminated as exc:
        _fail(Interrupted(f"stopped by {exc}", hint="nothing partial was kept"), args)
    except PgautodumperError as exc:
        _fail(exc, args)
    except Exception as exc:  # a bug: still one line and a named error, never a bare traceback
        _fail(UnexpectedError(f"unexpected {type(exc).__name__}: {exc}"), args)


def _fail(exc: PgautodumperError, args: list[str]) -> None:
    if _debug_requested(args):
        traceback.print_exc()
    print(f"pgautodumper: error: {exc}", file=sys.stderr)
    sys.exit(exc.exit_code)

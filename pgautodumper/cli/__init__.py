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

_COMMANDS = (
    "backup",
    "restore",
    "export",
    "verify",
    "list",
    "status",
    "preflight",
    "prune",
    "local_run",
)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
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


for _module in _COMMANDS:
    _command = importlib.import_module(f"pgautodumper.cli.{_module}").command
    cli.add_command(_command)


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

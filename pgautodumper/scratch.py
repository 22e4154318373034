"""A throwaway PostgreSQL server: the verify task's scratch server (production code,
run inside the Fargate task), and the local runtime's, tests' and benchmarks' database.

``initdb`` into a temporary directory, listen on 127.0.0.1 with scram
passwords, stop and delete everything on exit. PostgreSQL refuses to run as
root, so as root the server runs as the ``postgres`` user.
"""

from __future__ import annotations

import glob
import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path
from urllib.parse import quote

from pgautodumper.errors import PgToolError, UsageError

SUPERUSER = "postgres"

# How the postmaster logs a child that died of SIGKILL (reaper: LogChildExit).
_KILLED = re.compile(r"process \(PID \d+\) was terminated by signal 9")


def server_bin_dir() -> Path:
    """The newest installed PostgreSQL server binaries."""
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda p: int(Path(p).parent.parent.name),
    )
    if candidates:
        return Path(candidates[-1]).parent
    initdb = shutil.which("initdb")
    if initdb:
        return Path(initdb).parent
    raise PgToolError(
        "no PostgreSQL server binaries (initdb) found",
        hint="install them, e.g. 'apt-get install postgresql'",
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ThrowawayPostgres:
    """A private PostgreSQL cluster; use as a context manager."""

    def __init__(
        self,
        *,
        port: int | None = None,
        bin_dir: Path | None = None,
        root: Path | None = None,
        settings: dict[str, str] | None = None,
    ) -> None:
        self.bin_dir = bin_dir or server_bin_dir()
        self.settings = settings or {}
        self.port = port or free_port()
        self.root = root or Path(tempfile.mkdtemp(prefix="pgad-pg-"))
        self.owned = root is None
        self.data = self.root / "data"
        self.socket_dir = self.root / "run"
        self.log = self.root / "server.log"
        self._run_as = SUPERUSER if os.geteuid() == 0 else None

    # -- lifecycle ---------------------------------------------------------

    def start(self) -> ThrowawayPostgres:
        self.socket_dir.mkdir()
        if self._run_as:
            entry = pwd.getpwnam(self._run_as)
            os.chmod(self.root, 0o755)
            for path in (self.root, self.socket_dir):
                os.chown(path, entry.pw_uid, entry.pw_gid)
        self._run(
            "initdb",
            "-D",
            str(self.data),
            "-U",
            SUPERUSER,
            "-E",
            "UTF8",
            "--locale=C",
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
        )
        # mmap, not /dev/shm: Fargate has no sharedMemorySize, and its /dev/shm is tiny.
        options = (
            f"-p {self.port} -k {self.socket_dir} -c listen_addresses=127.0.0.1 "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
            "-c max_connections=100 -c dynamic_shared_memory_type=mmap"
            + "".join(f" -c {name}={value}" for name, value in self.settings.items())
        )
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.log), "-w", "start")
        return self

    @classmethod
    def attach(cls, root: Path, port: int) -> ThrowawayPostgres:
        """A server another process started (CI); stopping it is left to that process."""
        return cls(port=port, root=root)

    def restart(self) -> None:
        """Shut down fast and start again with the same options: every session ends.
        Only a server this process started: an attached one is another's to run."""
        if not self.owned:
            raise UsageError(f"the server at port {self.port} was attached, not started here")
        self._run(
            "pg_ctl", "-D", str(self.data), "-m", "fast", "-l", str(self.log), "-w", "restart"
        )

    def stop(self) -> None:
        if not self.owned:
            return
        if (self.data / "postmaster.pid").exists():
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop", check=False)
        shutil.rmtree(self.root, ignore_errors=True)

    def killed_processes(self) -> list[str]:
        """The postmaster's log lines for its processes a SIGKILL ended: on a machine out of
        memory, the kernel's out-of-memory killer picks a backend first (the largest)."""
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return []
        return [line.split("LOG:", 1)[-1].strip() for line in text.splitlines()
                if _KILLED.search(line)]  # fmt: skip

    def __enter__(self) -> ThrowawayPostgres:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- access ------------------------------------------------------------

    @property
    def admin_url(self) -> str:
        """Superuser over the private socket (trust auth: no password exists)."""
        return f"postgresql://{SUPERUSER}@/postgres?host={quote(str(self.socket_dir))}&port={self.port}"

    def url(self, user: str, password: str, dbname: str = "postgres") -> str:
        """A TCP URL with a scram password, the way a real server is reached."""
        return f"postgresql://{quote(user)}:{quote(password)}@127.0.0.1:{self.port}/{quote(dbname)}"

    def psql(self, sql: str, dbname: str = "postgres") -> str:
        result = self._run(
            "psql",
            "-X",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            str(self.socket_dir),
            "-p",
            str(self.port),
            "-U",
            SUPERUSER,
            "-d",
            dbname,
            "-At",
            "-c",
            sql,
        )
        return result.stdout

    def _run(self, tool: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        argv = [str(self.bin_dir / tool), *args]
        if self._run_as:
            argv = ["runuser", "-u", self._run_as, "--", *argv]
        result = subprocess.run(argv, capture_output=True, text=True, cwd=self.root, check=False)
        if check and result.returncode != 0:
            raise PgToolError(
                f"{tool} failed with exit code {result.returncode}: "
                f"{(result.stderr or result.stdout).strip()[-2000:]}",
                hint=f"see {self.log}",
            )
        return result


def main() -> None:
    """``python -m pgautodumper.scratch``: start a server, print ``ROOT PORT``.

    CI starts PostgreSQL this way before the tests (which attach to it through
    ``PGAUTODUMPER_TEST_PG=ROOT:PORT``); it stays up until SIGTERM.
    """
    import signal
    import sys

    server = ThrowawayPostgres().start()
    print(server.root, server.port, flush=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        signal.pause()
    finally:
        server.stop()


if __name__ == "__main__":
    main()


# Extensions whose CREATE EXTENSION needs the library preloaded (pg_cron also needs
# its database named at start).
_PRELOADED = ("pg_cron", "pgaudit")


def scratch_settings(bin_dir: Path, database: str) -> dict[str, str]:
    """What a verify's scratch server needs so that the extensions it has can be created."""
    libdir = subprocess.run(
        [str(bin_dir / "pg_config"), "--pkglibdir"], capture_output=True, text=True, check=False
    ).stdout.strip()
    present = [lib for lib in _PRELOADED if libdir and (Path(libdir) / f"{lib}.so").exists()]
    settings = {"shared_preload_libraries": ",".join(present)} if present else {}
    if "pg_cron" in present:
        settings["cron.database_name"] = database
    return settings

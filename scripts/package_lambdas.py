"""Build the Lambda artifact: one zip for all six handlers (``make package``).

    python scripts/package_lambdas.py [--arch x86_64|arm64] [--python-version 3.12]

The zip holds the ``pgautodumper`` package, ``lambdas/`` and the handlers'
dependencies, installed for the Lambda runtime (binary manylinux wheels for
the chosen architecture, CPython of the runtime's version), whatever machine
builds it. boto3 and its own dependencies come with the runtime and are left
out. The zip is deterministic (sorted entries, fixed timestamps), so an
unchanged tree gives identical bytes and Terraform sees no change. Each
function points at its handler: ``lambdas.<name>.handler``.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from collections.abc import Iterable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BUILD = REPO / "build" / "lambda"
ARTIFACT = BUILD / "pgautodumper-lambda.zip"
HANDLERS = ("lookup_secret", "preflight", "record", "prune", "release_lock", "notify")
# What the handlers import beyond the standard library (a test keeps this honest).
LAMBDA_DISTRIBUTIONS = ("psycopg", "pydantic")
# Provided by the Lambda Python runtime: never shipped (and never shadowing it).
RUNTIME_PROVIDED = ("boto3", "botocore", "s3transfer", "jmespath", "python-dateutil", "six",
                    "urllib3")  # fmt: skip
PLATFORMS = {"x86_64": "x86_64", "arm64": "aarch64", "aarch64": "aarch64"}
FIXED_TIME = (1980, 1, 1, 0, 0, 0)


def _distribution(spec: str) -> str:
    """'psycopg[binary]>=3.2,<4' -> 'psycopg'."""
    match = re.match(r"[A-Za-z0-9._-]+", spec)
    return match.group(0).lower() if match else spec


def requirements() -> list[str]:
    """The handlers' dependencies with the version ranges of pyproject.toml."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    wanted = [
        spec for spec in project["dependencies"] if _distribution(spec) in LAMBDA_DISTRIBUTIONS
    ]
    return wanted + list(project["optional-dependencies"]["lambda"])


def install(target: Path, arch: str, python_version: str) -> None:
    machine = PLATFORMS[arch]
    command = [
        sys.executable, "-m", "pip", "install", "--quiet", "--no-compile",
        "--target", str(target), "--implementation", "cp",
        "--python-version", python_version, "--only-binary=:all:",
        # Lambda's Amazon Linux 2023 has glibc 2.34: both tags run there.
        "--platform", f"manylinux2014_{machine}", "--platform", f"manylinux_2_28_{machine}",
        *requirements(),
    ]  # fmt: skip
    subprocess.run(command, check=True)


def _normalize(name: str) -> str:
    return name.lower().replace("-", "_").replace(".", "_")


def remove_runtime_provided(target: Path) -> list[str]:
    """Delete the files of distributions the runtime already has (by their RECORD)."""
    removed = []
    excluded = {_normalize(n) for n in RUNTIME_PROVIDED}
    for dist_info in sorted(target.glob("*.dist-info")):
        name = _normalize(dist_info.name.split("-", 1)[0])  # name-version.dist-info
        if name not in excluded:
            continue
        record = dist_info / "RECORD"
        for line in record.read_text().splitlines() if record.exists() else []:
            path = target / line.split(",", 1)[0]
            if path.is_file():
                path.unlink()
        shutil.rmtree(dist_info, ignore_errors=True)
        removed.append(dist_info.name)
    for directory in sorted(target.rglob("*"), reverse=True):  # now-empty package folders
        if directory.is_dir() and not any(directory.iterdir()):
            directory.rmdir()
    return removed


def _files(root: Path, base: Path) -> Iterable[tuple[Path, str]]:
    for path in sorted(root.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
            yield path, path.relative_to(base).as_posix()


def write_zip(entries: Iterable[tuple[Path | bytes, str]], destination: Path) -> None:
    """A zip whose bytes depend only on the entries' names and contents."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    ordered = sorted(entries, key=lambda entry: entry[1])
    with zipfile.ZipFile(destination, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        for source, name in ordered:
            info = zipfile.ZipInfo(name, date_time=FIXED_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            executable = isinstance(source, Path) and os.access(source, os.X_OK)
            info.external_attr = (0o100755 if executable else 0o100644) << 16
            data = source if isinstance(source, bytes) else source.read_bytes()
            archive.writestr(info, data)


def metadata(version: str) -> tuple[bytes, str]:
    """A minimal dist-info so ``pgautodumper.__version__`` is right inside Lambda."""
    body = f"Metadata-Version: 2.1\nName: pgautodumper\nVersion: {version}\n".encode()
    return body, f"pgautodumper-{version}.dist-info/METADATA"


def build(arch: str, python_version: str) -> Path:
    deps = BUILD / f"deps-{arch}-{python_version}"
    shutil.rmtree(deps, ignore_errors=True)
    install(deps, arch, python_version)
    removed = remove_runtime_provided(deps)
    shutil.rmtree(deps / "bin", ignore_errors=True)  # console scripts: nothing runs them
    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    entries: list[tuple[Path | bytes, str]] = [
        *_files(deps, deps),
        *_files(REPO / "pgautodumper", REPO),
        *_files(REPO / "lambdas", REPO),
        metadata(version),
    ]
    write_zip(entries, ARTIFACT)
    unpacked = sum(info.file_size for info in zipfile.ZipFile(ARTIFACT).infolist())
    print(f"left out (in the runtime): {', '.join(removed) or 'nothing'}")
    print(
        f"{ARTIFACT.relative_to(REPO)}: {ARTIFACT.stat().st_size / 2**20:.1f} MiB zipped, "
        f"{unpacked / 2**20:.1f} MiB unzipped ({arch}, Python {python_version}); "
        f"handlers: {', '.join(f'lambdas.{h}.handler' for h in HANDLERS)}"
    )
    return ARTIFACT


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--arch", choices=sorted(PLATFORMS), default=os.environ.get("LAMBDA_ARCH", "x86_64")
    )
    parser.add_argument("--python-version", default=os.environ.get("LAMBDA_PYTHON_VERSION", "3.12"))
    args = parser.parse_args(argv)
    build(args.arch, args.python_version)


if __name__ == "__main__":
    main()

"""Build the Lambda artifact: one zip for all nine handlers (``make package``).

    python scripts/package_lambdas.py [--arch x86_64|arm64] [--python-version 3.12]

The zip holds the ``pgautodumper`` package, ``lambdas/`` and the handlers'
dependencies, installed for the Lambda runtime (binary manylinux wheels for
the chosen architecture, CPython of the runtime's version), whatever machine
builds it. The AWS SDK is shipped too, pinned by ``scripts/lambda-constraints.txt``:
the runtime's bundled boto3 is older than what the code needs (conditional
writes, default request checksums for Object Lock buckets), and the function
directory comes first on the runtime's module path, so the shipped copy wins
(AWS recommends shipping it: https://docs.aws.amazon.com/lambda/latest/dg/python-package.html,
"Runtime dependencies in Python").
The zip is deterministic (sorted entries, fixed timestamps), so an unchanged
tree gives identical bytes and Terraform sees no change. Each function points
at its handler: ``lambdas.<name>.handler``.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tomllib
import urllib.request
import zipfile
from collections.abc import Iterable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BUILD = REPO / "build" / "lambda"
ARTIFACT = BUILD / "pgautodumper-lambda.zip"
CONSTRAINTS = REPO / "scripts" / "lambda-constraints.txt"
# terraform/lambda.tf local.functions names the same nine (a test keeps them equal): the
# eight steps of the state machine and the hourly freshness function.
HANDLERS = (
    "lookup_secret", "preflight", "record", "record_verify", "task_failure", "prune",
    "release_lock", "notify", "freshness",
)  # fmt: skip
# What the handlers import beyond the standard library (a test keeps this honest).
LAMBDA_DISTRIBUTIONS = ("boto3", "psycopg", "pydantic")
# The oldest botocore that sends a checksum header on every PutObject by default
# (request_checksum_calculation=when_supported), which Object Lock buckets require;
# IfMatch on PutObject/DeleteObject needs 1.35.69.
MIN_BOTOCORE = (1, 36, 0)
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
        "--constraint", str(CONSTRAINTS),
        *requirements(),
    ]  # fmt: skip
    subprocess.run(command, check=True)
    check_botocore(target)


def _normalize(name: str) -> str:
    return name.lower().replace("-", "_").replace(".", "_")


def installed_version(target: Path, distribution: str) -> tuple[int, ...] | None:
    """The version of ``distribution`` installed in ``target`` (from its dist-info)."""
    wanted = _normalize(distribution)
    for dist_info in target.glob("*.dist-info"):
        name, _, version = dist_info.name.removesuffix(".dist-info").partition("-")
        if _normalize(name) == wanted:
            return tuple(int(part) for part in re.findall(r"\d+", version)[:3])
    return None


def check_botocore(target: Path) -> None:
    """Refuse an artifact whose botocore cannot send what the code sends."""
    version = installed_version(target, "botocore")
    if version is None or version < MIN_BOTOCORE:
        raise SystemExit(
            f"package_lambdas: botocore {version} in {target} is older than "
            f"{'.'.join(map(str, MIN_BOTOCORE))}; fix {CONSTRAINTS.relative_to(REPO)}"
        )


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


# Preflight connects to the database: with sslmode verify-full it trusts the RDS/Aurora
# CAs of this bundle (pgautodumper.tls), shipped in the zip as package data.
RDS_BUNDLE_URL = "https://truststore.pki.rds.amazonaws.com/global/global-bundle.pem"
RDS_BUNDLE_ENV = "RDS_CA_BUNDLE"
RDS_BUNDLE_ENTRY = "pgautodumper/certs/rds-global-bundle.pem"


def rds_bundle() -> tuple[bytes, str]:
    """The RDS global CA bundle: $RDS_CA_BUNDLE (a file) or AWS's trust store."""
    source = os.environ.get(RDS_BUNDLE_ENV)
    try:
        if source:
            body = Path(source).read_bytes()
        else:
            with urllib.request.urlopen(RDS_BUNDLE_URL, timeout=60) as response:
                body = response.read()
    except OSError as exc:
        raise SystemExit(
            f"package_lambdas: cannot get the RDS CA bundle ({source or RDS_BUNDLE_URL}): {exc}; "
            f"download it and set {RDS_BUNDLE_ENV}=/path/to/global-bundle.pem"
        ) from None
    if b"-----BEGIN CERTIFICATE-----" not in body:
        raise SystemExit(f"package_lambdas: {source or RDS_BUNDLE_URL} is not a PEM bundle")
    return body, RDS_BUNDLE_ENTRY


def metadata(version: str) -> tuple[bytes, str]:
    """A minimal dist-info so ``pgautodumper.__version__`` is right inside Lambda."""
    body = f"Metadata-Version: 2.1\nName: pgautodumper\nVersion: {version}\n".encode()
    return body, f"pgautodumper-{version}.dist-info/METADATA"


def build(arch: str, python_version: str, destination: Path = ARTIFACT) -> Path:
    deps = BUILD / f"deps-{arch}-{python_version}"
    shutil.rmtree(deps, ignore_errors=True)
    install(deps, arch, python_version)
    shutil.rmtree(deps / "bin", ignore_errors=True)  # console scripts: nothing runs them
    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    entries: list[tuple[Path | bytes, str]] = [
        *_files(deps, deps),
        *_files(REPO / "pgautodumper", REPO),
        *_files(REPO / "lambdas", REPO),
        metadata(version),
        rds_bundle(),
    ]
    write_zip(entries, destination)
    check_size(destination)
    unpacked = sum(info.file_size for info in zipfile.ZipFile(destination).infolist())
    botocore = ".".join(map(str, installed_version(deps, "botocore") or ()))
    print(f"AWS SDK shipped: botocore {botocore} (pinned by {CONSTRAINTS.relative_to(REPO)})")
    print(
        f"{destination}: {destination.stat().st_size / 2**20:.1f} MiB zipped, "
        f"{unpacked / 2**20:.1f} MiB unzipped ({arch}, Python {python_version}); "
        f"handlers: {', '.join(f'lambdas.{h}.handler' for h in HANDLERS)}"
    )
    return destination


# Lambda quotas: a zip uploaded directly (Terraform's filename) is at most 50 MB,
# and the unzipped function at most 250 MB:
# https://docs.aws.amazon.com/lambda/latest/dg/gettingstarted-limits.html
MAX_ZIPPED_BYTES = 50 * 1000 * 1000
MAX_UNZIPPED_BYTES = 250 * 1000 * 1000


def check_size(artifact: Path) -> None:
    unpacked = sum(info.file_size for info in zipfile.ZipFile(artifact).infolist())
    if artifact.stat().st_size > MAX_ZIPPED_BYTES or unpacked > MAX_UNZIPPED_BYTES:
        raise SystemExit(
            f"package_lambdas: {artifact} is {artifact.stat().st_size} bytes zipped and "
            f"{unpacked} unzipped; Lambda takes at most 50 MB zipped and 250 MB unzipped"
        )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--arch", choices=sorted(PLATFORMS), default=os.environ.get("LAMBDA_ARCH", "x86_64")
    )
    parser.add_argument("--python-version", default=os.environ.get("LAMBDA_PYTHON_VERSION", "3.12"))
    parser.add_argument("--output", type=Path, default=ARTIFACT, help="where to write the zip")
    args = parser.parse_args(argv)
    build(args.arch, args.python_version, args.output)


if __name__ == "__main__":
    main()

#!/usr/bin/env bash
# Run checkov from its own virtualenv (.venv-checkov).
#
# checkov pins boto3/botocore/etc. in ways that conflict with moto and the
# project's own boto3, so it never goes into .venv. The first call creates the
# venv and installs the pinned version; later calls reuse it.
#
#   scripts/checkov.sh --install-only     create/upgrade the venv and exit
#   scripts/checkov.sh -d terraform ...   run checkov with these arguments
set -euo pipefail

CHECKOV_VERSION="${CHECKOV_VERSION:-3.3.30}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${CHECKOV_VENV:-$ROOT/.venv-checkov}"
PYTHON="${PYTHON:-python3}"

if [[ ! -x "$VENV/bin/checkov" ]] || ! "$VENV/bin/pip" show -q "checkov" >/dev/null 2>&1 \
    || [[ "$("$VENV/bin/pip" show checkov | sed -n 's/^Version: //p')" != "$CHECKOV_VERSION" ]]; then
    "$PYTHON" -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --upgrade pip
    "$VENV/bin/pip" install --quiet "checkov==$CHECKOV_VERSION"
fi

if [[ "${1:-}" == "--install-only" ]]; then
    exit 0
fi
# No network here: skip the Prisma Cloud guideline download (a traceback otherwise).
export BC_SKIP_MAPPING=TRUE
exec "$VENV/bin/checkov" --skip-download "$@"

"""Write schema/backup-request.schema.json and its example from the contract.

The JSON Schema of :class:`BackupRequest` is for people who start an
on-demand execution from the console (and for editors): it is generated,
never edited by hand; a test fails when the committed file differs.

    python scripts/backup_request_schema.py          # rewrite both files
    python scripts/backup_request_schema.py --check  # exit 1 when they are stale
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from pgautodumper.contract import BackupRequest

SCHEMA_DIR = Path(__file__).resolve().parent.parent / "schema"
SCHEMA_ID = "https://github.com/pgautodumper/pgautodumper/schema/backup-request.schema.json"

EXAMPLE = {
    "name": "orders",
    "secret_arn": "arn:aws:secretsmanager:eu-west-1:123456789012:secret:rds!db-orders-AbCdEf",
    "bucket": "acme-pgautodumper-backups",
    "prefix": "prod",
    "mode": "backup",
    "verify": True,
    "retention": {
        "keep_last": 7,
        "keep_daily": 14,
        "keep_weekly": 8,
        "keep_monthly": 12,
        "keep_yearly": 3,
        "incomplete_grace_hours": 24,
    },
    "notify_on_success": False,
    "sslmode": "require",
    "task": {"cpu": 1024, "memory": 4096, "timeout_seconds": 21600},
    "jobs": 2,
    "lock_wait_timeout_seconds": 300,
    "stream_threshold_bytes": 67108864,
}


def render() -> dict[str, str]:
    """File name → content, exactly as committed."""
    schema = BackupRequest.model_json_schema(mode="validation")
    schema = {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": SCHEMA_ID, **schema}
    return {
        "backup-request.schema.json": json.dumps(schema, indent=2, sort_keys=True) + "\n",
        "backup-request.example.json": json.dumps(EXAMPLE, indent=2) + "\n",
    }


def main(argv: list[str]) -> int:
    stale = []
    for name, content in render().items():
        path = SCHEMA_DIR / name
        if "--check" in argv:
            if not path.exists() or path.read_text() != content:
                stale.append(name)
        else:
            SCHEMA_DIR.mkdir(exist_ok=True)
            path.write_text(content)
            print(f"wrote {path}")
    if stale:
        print(f"stale: {', '.join(stale)}; run: python scripts/backup_request_schema.py")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""The dump + compress + hash stage of `pgautodumper backup`, into a null sink.

Run as a child of bench.py so its peak RSS is measured on its own.
"""

from __future__ import annotations

import json
import sys

from pgautodumper.backup import BackupOptions, run_backup
from pgautodumper.connection import ConnectionInfo
from pgautodumper.storage import NullSink


def main() -> None:
    url, level = sys.argv[1], int(sys.argv[2])
    manifest = run_backup(
        ConnectionInfo.from_url(url),
        BackupOptions(bucket="unused", name="bench", level=level),
        sink_factory=lambda _key, _part_size: NullSink(),
    )
    # duration_seconds runs from connecting to the end of the stream: the stage
    # without the interpreter's start-up.
    print(
        json.dumps(
            {
                "stored": manifest.stored_bytes,
                "raw": manifest.raw_bytes,
                "seconds": manifest.duration_seconds,
            }
        )
    )


if __name__ == "__main__":
    main()

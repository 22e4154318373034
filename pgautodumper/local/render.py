"""Render the ASL template exactly as Terraform's ``templatefile`` does.

The template (``state_machine/backup.asl.json``) holds ``${name}`` placeholders
inside JSON strings and nothing else of Terraform's template language, so the
rendering is a substitution; anything it cannot render is refused rather than
left behind.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from pgautodumper.errors import UsageError

TEMPLATE = Path(__file__).resolve().parents[2] / "state_machine" / "backup.asl.json"
PLACEHOLDERS = (
    "lookup_secret_function_arn",
    "preflight_function_arn",
    "record_function_arn",
    "record_verify_function_arn",
    "task_failure_function_arn",
    "prune_function_arn",
    "release_lock_function_arn",
    "notify_function_arn",
    "cluster_arn",
    "backup_task_definition_arn",
    "verify_task_definition_arn",
    "container_name",
    "subnet_ids",
    "security_group_ids",
    "assign_public_ip",
)
_PLACEHOLDER = re.compile(r"(\$\$)?\$\{([^}]*)\}")


def render(values: dict[str, str], template: str | None = None) -> str:
    """The rendered definition; every placeholder needs a value, and only those."""
    text = TEMPLATE.read_text() if template is None else template
    missing = sorted(set(PLACEHOLDERS) - set(values))
    if missing:
        raise UsageError(f"state machine template: no value for {', '.join(missing)}")

    def substitute(match: re.Match[str]) -> str:
        escaped, name = match.groups()
        if escaped:  # templatefile's "$${" is a literal "${"
            return "${" + name + "}"
        if name not in PLACEHOLDERS:
            raise UsageError(f"state machine template: unknown placeholder ${{{name}}}")
        return json.dumps(values[name])[1:-1]

    rendered = _PLACEHOLDER.sub(substitute, text)
    if "%{" in rendered:
        raise UsageError("state machine template: template directives (%{...}) are not supported")
    json.loads(rendered)
    return rendered

"""Step Functions Local's ``MockConfigFile``, loaded into moto's engine (failure drills).

Step Functions Local parses the file but, in moto, never loads it (DESIGN.md).
:func:`load_mock_config` loads one; ``StartExecution`` on
``<state machine ARN>#<TestCase>`` then runs that test case, as in Step
Functions Local. One extension: a state whose mocked responses are exhausted
(a retry number beyond the last range) runs its real integration, so "fail
once, then really succeed" drills work.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pgautodumper.local.lambda_runtime import LocalRuntimeError

_mock_config: dict[str, Any] | None = None


def load_mock_config(source: Path | dict[str, Any] | None) -> None:
    """Load a Step Functions Local ``MockConfigFile`` (path or parsed JSON); None unloads."""
    global _mock_config
    if source is None or isinstance(source, dict):
        _mock_config = source
    else:
        _mock_config = json.loads(Path(source).read_text())


def mock_test_case(state_machine_name: str, test_case: str) -> Any:
    """Build moto's ``MockTestCase`` from the loaded file (Step Functions Local semantics)."""
    from moto.stepfunctions.parser.mocking import mock_config as mc

    config = _mock_config or {}
    cases = config.get("StateMachines", {}).get(state_machine_name, {}).get("TestCases", {})
    if test_case not in cases:
        raise LocalRuntimeError(
            f"no test case {test_case!r} for state machine {state_machine_name!r} "
            "in the loaded MockConfigFile",
            hint=f"known test cases: {', '.join(sorted(cases)) or 'none'}",
        )
    states = []
    for state_name, response_name in cases[test_case].items():
        raw = config.get("MockedResponses", {}).get(response_name)
        if not raw:
            raise LocalRuntimeError(f"MockConfigFile has no MockedResponses {response_name!r}")
        responses = []
        for numbers, body in raw.items():
            start, _, end = numbers.partition("-")
            first, last = int(start), int(end or start)
            if "Return" in body:
                responses.append(mc.MockedResponseReturn(first, last, body["Return"]))
            else:
                throw = body.get("Throw", {})
                responses.append(
                    mc.MockedResponseThrow(
                        first, last, throw.get("Error", ""), throw.get("Cause", "")
                    )
                )
        states.append(mc.StateMockedResponses(state_name, response_name, responses))
    return mc.MockTestCase(state_machine_name, test_case, states)

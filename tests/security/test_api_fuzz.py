"""The API fuzzed from its own OpenAPI schema (schemathesis), in process, on real Postgres and
Redis: valid and invalid requests for every operation, with an admin key and a publisher
key. No answer may be a 5xx or carry a traceback.

schemathesis runs the app in its own event loop thread (with its lifespan), so this app is
not the ``target`` one; it shares its settings, database and keys.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from itertools import count
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.python.asgi import shutdown_lifespans

from app.main import create_app
from tests.security.conftest import FUZZ, Target

# Per operation and mode: about 30 s for the whole API inside `make test`. Set
# CLICKTRACK_FUZZ_EXAMPLES for a longer run.
EXAMPLES_PER_OPERATION = int(os.environ.get("CLICKTRACK_FUZZ_EXAMPLES", "8"))
_turn = count()


@pytest.fixture(scope="module")
def api_schema(target: Target) -> Iterator[schemathesis.BaseSchema]:
    schema = schemathesis.openapi.from_asgi("/openapi.json", create_app(target.settings))
    try:
        yield schema
    finally:
        shutdown_lifespans()


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_no_request_makes_the_api_fail(
    api_schema: schemathesis.BaseSchema, target: Target, mode: GenerationMode
) -> None:
    keys = (target.admin_key, target.publisher_key)
    operations = [result.ok() for result in api_schema.get_all_operations()]  # type: ignore[union-attr]
    assert len(operations) >= 10
    for operation in operations:

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(
            max_examples=EXAMPLES_PER_OPERATION,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            database=None,
        )
        def fuzz(case: schemathesis.Case[Any]) -> None:
            key = keys[next(_turn) % 2]
            response = case.call(headers={"Authorization": f"Bearer {key}"})
            FUZZ[f"API from its OpenAPI schema, {mode.value} (schemathesis)"] += 1
            assert response.status_code < 500, (case.as_curl_command(), response.text[:500])
            assert "Traceback" not in response.text, case.as_curl_command()

        try:
            fuzz()
        except Unsatisfiable:  # nothing to vary (no parameters to make invalid, say)
            FUZZ[f"API operations without {mode.value} cases"] += 1

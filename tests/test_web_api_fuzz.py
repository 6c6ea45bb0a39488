"""The portal's OpenAPI description fuzzed with schemathesis: whatever a partner's system sends to
the JSON API (and /health), the server never answers with a server error; a short run (a few
examples per operation) on a small store, with a valid partner token and without one."""

from __future__ import annotations

import warnings

import pytest
from hypothesis import HealthCheck, settings
from web_fixtures import demo_folder  # noqa: F401 - the fixture

from icdsl.billing import accounts
from icdsl.billing.store import open_store

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    import schemathesis
    from schemathesis.checks import not_a_server_error

from icdsl.web.app import create_app  # noqa: E402
from icdsl.web.config import WebConfig  # noqa: E402

TOKEN: dict[str, str] = {}


@pytest.fixture(scope="module")
def api_app(demo_folder):  # noqa: F811 - the fixture
    folder = demo_folder
    store = open_store(f"sqlite:///{folder / 'icdsl.db'}", data_dir=folder / "icdsl-data")
    with store.session() as s:
        _, TOKEN["a"] = accounts.issue_token(s, "LUMFR", "fuzz")
    yield create_app(WebConfig(db=None, data=None, secret_key="k" * 40), store)
    store.close()


@pytest.fixture(scope="module")
def api_schema(api_app):
    return schemathesis.openapi.from_asgi("/api/openapi.json", api_app)


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(max_examples=3, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_no_server_error_with_a_token(case):
    case.call_and_validate(headers={"Authorization": f"Bearer {TOKEN['a']}"}, checks=[not_a_server_error])


@schema.parametrize()
@settings(max_examples=2, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_no_server_error_without_a_token(case):
    response = case.call_and_validate(checks=[not_a_server_error])
    if case.path.startswith("/api/v1/"):
        assert response.status_code >= 400  # nothing without a token

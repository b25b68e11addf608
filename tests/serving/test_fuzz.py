"""Bounded fuzzing of the service's OpenAPI schema on the tiny bundle: a few hundred generated
requests, no server error, every refusal in the documented shape."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from tests.fuzzing import fuzz
from tests.serving.test_api import MAX_BATCH, serve_config, wait_ready
from triage.serving.api import create_app


def check(method: str, url: str, response) -> None:
    assert response.status_code < 500, (method, url, response.status_code, response.text[:300])
    if response.status_code >= 400:
        body = response.json()
        assert isinstance(body["detail"], str) and isinstance(body["errors"], list)
    elif method == "POST":
        assert 1 <= len(response.json()["predictions"]) <= MAX_BATCH


@pytest.mark.slow
def test_fuzzing_the_service_finds_no_server_error(root, bundle, tmp_path):
    app = create_app(serve_config(root, bundle, tmp_path / "predictions.sqlite"))
    with TestClient(app) as client:
        wait_ready(client)
        statuses = fuzz(client, client.get("/openapi.json").json(), check, examples=300)
        metrics = client.get("/metrics").text
    assert sum(statuses.values()) == 300
    # every kind of answer was reached (each operation drawn alike; the admin endpoints are off)
    assert {200, 403, 415, 422} <= set(statuses) and statuses[200] >= 10, statuses
    assert 'triage_prediction_log_errors_total{operation="append"} 0.0' in metrics

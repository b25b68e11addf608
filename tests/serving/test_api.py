"""The HTTP service on the tiny bundle: endpoints, input validation (4xx with a clear message,
never a 500), the OpenAPI schema, Prometheus metrics and the prediction log."""

from __future__ import annotations

import copy
import json
import re
import threading
import time
from dataclasses import fields

import pytest
from fastapi.testclient import TestClient

from triage.cli import main
from triage.config import load_config
from triage.serving.api import create_app
from triage.serving.api_models import MAX_CHANNEL_CHARS, MAX_ID_CHARS, max_body_bytes
from triage.serving.predlog import PredictionLog
from triage.serving.record import Prediction
from triage.serving.runtime import Runtime

MAX_BATCH, MAX_CHARS = 4, 120


def serve_config(root, bundle, log_path, *overrides):
    return load_config(
        [
            f"serve.bundle={bundle}",
            f"serve.prediction_log.path={log_path}",
            f"serve.max_batch={MAX_BATCH}",
            f"serve.max_text_chars={MAX_CHARS}",
            *overrides,
        ],
        root=root,
    ).serve


def wait_ready(client: TestClient, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while client.get("/readyz").status_code != 200:
        assert time.monotonic() < deadline, client.get("/readyz").json()
        time.sleep(0.02)


@pytest.fixture(scope="module")
def service(root, bundle, tmp_path_factory):
    """A running app (pii_mask on) and its prediction-log path."""
    log_path = tmp_path_factory.mktemp("serve") / "predictions.sqlite"
    app = create_app(serve_config(root, bundle, log_path))
    with TestClient(app) as client:
        wait_ready(client)
        yield client, log_path


def test_health_ready_and_model(service, bundle):
    client, _ = service
    assert client.get("/healthz").json()["status"] == "ok"
    ready = client.get("/readyz")
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert ready.status_code == 200 and ready.json()["model_version"] == manifest["model_version"]
    info = client.get("/v1/model").json()
    assert info["model_version"] == manifest["model_version"]
    assert info["heads"]["intent"]["labels"] == manifest["heads"]["intent"]["labels"]
    assert info["limits"] == {"max_batch": MAX_BATCH, "max_text_chars": MAX_CHARS}
    assert info["routing"]["intents"]["abuse"]["automatic"] is False
    assert "sha256" not in json.dumps(info)


def test_classify_single_and_batch(service, bundle):
    client, _ = service
    one = client.post("/v1/classify", json={"messages": [{"text": "Waar blijft mijn pakket?"}]})
    assert one.status_code == 200, one.text
    body = one.json()
    [p] = body["predictions"]
    expected = Runtime.load(bundle).classify(["Waar blijft mijn pakket?"])[0].to_dict()
    assert {k: v for k, v in p.items() if k != "message_id"} == expected
    assert len(p["message_id"]) == 32 and body["model_version"] == p["model_version"]
    batch = client.post(
        "/v1/classify",
        json={
            "messages": [
                {"text": "code SAVE10 isn't working", "id": "m-1", "lang": "EN"},
                {"text": "Kan ik iemand spreken?", "id": "m-2", "channel": "instagram"},
            ]
        },
    )
    assert batch.status_code == 200, batch.text
    got = batch.json()["predictions"]
    assert [g["message_id"] for g in got] == ["m-1", "m-2"]
    assert got[0]["lang"] == "en" and got[1]["lang"] == "nl"
    assert {g["decision"] for g in got} <= {"auto", "review"}


@pytest.mark.parametrize(
    ("body", "status", "says"),
    [
        ({"messages": [{"text": ""}]}, 422, "messages[0].text: String should have at least 1"),
        ({"messages": [{"text": "  \t\n"}]}, 422, "messages[0].text: text is only whitespace"),
        ({"messages": [{"text": "\u200b"}]}, 422, "only whitespace or invisible"),
        ({"messages": [{"text": "x" * (MAX_CHARS + 1)}]}, 422, f"at most {MAX_CHARS} characters"),
        ({"messages": [{"text": "a"}] * (MAX_BATCH + 1)}, 422, f"at most {MAX_BATCH} items"),
        ({"messages": []}, 422, "messages: List should have at least 1 item"),
        ({"messages": [{"text": 42}]}, 422, "messages[0].text: Input should be a valid string"),
        ({"messages": [{"text": ["a"]}]}, 422, "messages[0].text: Input should be a valid string"),
        ({"messages": "hello"}, 422, "messages: Input should be a valid list"),
        ({"messages": [{"txt": "a"}]}, 422, "messages[0].text: Field required"),
        ({"messages": [{"text": "a", "lang": "dutch"}]}, 422, "messages[0].lang"),
        ({"messages": [{"text": "a", "id": 5}]}, 422, "messages[0].id"),
        ({"text": "a"}, 422, "messages: Field required"),
        ([{"text": "a"}], 422, 'expected a JSON object like {"messages"'),
    ],
)
def test_invalid_bodies_get_a_clear_4xx(service, body, status, says):
    client, _ = service
    response = client.post("/v1/classify", json=body)
    assert response.status_code == status
    assert says in response.json()["detail"]
    assert all({"loc", "msg"} <= set(e) for e in response.json()["errors"])


@pytest.mark.parametrize(
    ("content", "headers", "status", "says"),
    [
        (b"{not json", {"content-type": "application/json"}, 422, "body: not valid JSON"),
        (b'{"messages": [{"text": "a"}]}', {"content-type": "text/plain"}, 415, "text/plain"),
        (b"", {"content-type": "application/json"}, 422, "expected a JSON object"),
        (b"x" * 10_000_000, {"content-type": "application/json"}, 413, "over the limit"),
    ],
)
def test_non_json_and_oversized_bodies(service, content, headers, status, says):
    client, _ = service
    response = client.post("/v1/classify", content=content, headers=headers)
    assert response.status_code == status and says in response.json()["detail"]


def _at_the_limits(n: int, chars: int, char: str = "\U0001f600") -> dict:
    """``n`` messages with every text, id and channel at its longest, of astral characters."""
    return {
        "messages": [
            {"text": char * chars, "id": char * MAX_ID_CHARS, "channel": char * MAX_CHANNEL_CHARS}
        ]
        * n
    }


def test_the_body_cap_fits_the_documented_limits_escaped():
    """The documented limits (64 messages of 2,000 characters) sent as ``json.dumps`` does by
    default: an emoji takes 12 bytes (a \\u-escaped surrogate pair)."""
    body = json.dumps(_at_the_limits(64, 2000)).encode()
    assert len(body) <= max_body_bytes(64, 2000) < 2 * len(body)


def test_bodies_within_the_limits_are_not_refused_as_too_large(service):
    client, _ = service
    body = json.dumps(_at_the_limits(MAX_BATCH, MAX_CHARS)).encode()
    response = client.post(
        "/v1/classify", content=body, headers={"content-type": "application/json"}
    )
    assert response.status_code == 200, response.text[:300]
    assert len(response.json()["predictions"]) == MAX_BATCH


def test_a_body_not_utf8_gets_a_documented_400(service):
    client, _ = service
    response = client.post(
        "/v1/classify",
        content='{"messages": [{"text": "café"}]}'.encode("latin-1"),
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 400
    assert "UTF-8" in response.json()["detail"]
    assert response.json()["errors"] == [
        {"loc": "body", "msg": response.json()["errors"][0]["msg"]}
    ]
    responses = client.get("/openapi.json").json()["paths"]["/v1/classify"]["post"]["responses"]
    assert responses["400"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "/ErrorResponse"
    )
    missing = client.get("/no-such-page")  # FastAPI's own errors keep the same shape
    assert missing.status_code == 404 and missing.json() == {"detail": "Not Found", "errors": []}


def test_lang_must_be_one_of_the_models_languages(service, bundle):
    client, _ = service
    languages = json.loads((bundle / "manifest.json").read_text())["languages"]
    bad = client.post(
        "/v1/classify", json={"messages": [{"text": "a"}, {"text": "b", "lang": "xx"}]}
    )
    assert bad.status_code == 422
    [error] = bad.json()["errors"]
    assert error["loc"] == "messages[1].lang" and "'xx'" in error["msg"]
    assert all(lang in bad.json()["detail"] for lang in [*languages, "und"])
    for lang in [languages[0].upper(), "und", None]:
        ok = client.post("/v1/classify", json={"messages": [{"text": "hallo", "lang": lang}]})
        assert ok.status_code == 200, (lang, ok.text)
    [p] = ok.json()["predictions"]
    assert p["lang"] in [*languages, "und"]


def test_chunked_uploads_are_capped_too(service):
    """A chunked body states no length: the limit holds while it is read, and a small one still
    reaches the endpoint whole."""
    client, _ = service

    def chunks(body: bytes, size: int = 65_536):
        yield from (body[i : i + size] for i in range(0, len(body), size))

    headers = {"content-type": "application/json"}
    big = client.post("/v1/classify", content=chunks(b"x" * 10_000_000), headers=headers)
    assert big.status_code == 413 and "over the limit" in big.json()["detail"]
    body = json.dumps({"messages": [{"text": "Waar blijft mijn pakket?"}] * 3}).encode()
    small = client.post("/v1/classify", content=chunks(body, 7), headers=headers)
    assert small.status_code == 200 and len(small.json()["predictions"]) == 3


def _mutations(valid: dict):
    """Schemathesis-style malformed variants of a valid body: every node replaced by values of
    the wrong type or out of range, required keys removed, unknown keys added."""
    junk = [None, 0, -1, 1.5, True, "", " ", "x" * (MAX_CHARS * 3), [], {}, ["a"], {"a": 1}]
    paths = [(), ("messages",), ("messages", 0)] + [
        ("messages", 0, key) for key in ("text", "id", "lang", "channel")
    ]
    for path in paths:
        for value in junk:
            body = copy.deepcopy(valid)
            if not path:
                yield value
                continue
            node = body
            for key in path[:-1]:
                node = node[key]
            node[path[-1]] = value
            yield body
        if path and path[-1] in ("messages", "text"):
            body = copy.deepcopy(valid)
            node = body if len(path) == 1 else body["messages"][0]
            del node[path[-1]]
            yield body
    for where in ((), ("messages", 0)):
        body = copy.deepcopy(valid)
        node = body if not where else body["messages"][0]
        node["unexpected"] = 1
        yield body


def test_malformed_inputs_never_give_a_500(service):
    client, _ = service
    valid = {"messages": [{"text": "hello", "id": "a", "lang": "en", "channel": "x"}]}
    seen = set()
    for body in _mutations(valid):
        response = client.post("/v1/classify", json=body)
        assert response.status_code < 500, (body, response.text)
        assert response.status_code == 200 or "detail" in response.json()
        seen.add(response.status_code)
    assert seen == {200, 422}  # some mutations are valid (a null id), most are not


def test_openapi_describes_the_endpoints(service):
    client, _ = service
    schema = client.get("/openapi.json").json()
    paths = schema["paths"]
    assert set(paths) >= {"/v1/classify", "/healthz", "/readyz", "/v1/model", "/metrics"}
    classify = paths["/v1/classify"]["post"]
    assert set(classify["responses"]) >= {"200", "413", "415", "422", "503"}
    components = schema["components"]["schemas"]
    request = components["ClassifyRequest"]["properties"]["messages"]
    assert (request["minItems"], request["maxItems"]) == (1, MAX_BATCH)
    text = components["Message"]["properties"]["text"]
    assert (text["minLength"], text["maxLength"]) == (1, MAX_CHARS)
    assert components["Message"]["required"] == ["text"]
    assert components["Message"]["additionalProperties"] is False
    prediction = components["PredictionOut"]["properties"]
    # the prediction record's fields, after the message id, all required, described
    assert list(prediction) == ["message_id", *(f.name for f in fields(Prediction))]
    assert components["PredictionOut"]["required"] == list(prediction)
    assert prediction["intent_probs"]["additionalProperties"] == {"type": "number"}
    assert prediction["decision"]["description"].startswith("auto: acted on without a person")
    assert "moderation_review, review or none" in prediction["action"]["description"]
    error = classify["responses"]["422"]["content"]["application/json"]["schema"]
    assert error["$ref"].endswith("/ErrorResponse")
    # the served 200 body has exactly the documented fields
    served = client.post("/v1/classify", json={"messages": [{"text": "hi"}]}).json()
    assert set(served["predictions"][0]) == set(prediction)


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_the_docs_pages_load_without_internet(service, page):
    """Their scripts and styles come from the service itself, not a CDN."""
    client, _ = service
    html = client.get(page)
    assert html.status_code == 200
    assets = re.findall(r'(?:src|href)="([^"]+\.(?:js|css))"', html.text)
    assert assets and all(a.startswith("/") for a in assets), assets
    for asset in assets:
        assert client.get(asset).status_code == 200, asset


def test_metrics_count_requests_and_decisions(service):
    client, _ = service
    client.post("/v1/classify", json={"messages": [{"text": "love this product"}]})
    client.post("/v1/classify", json={"messages": [{"text": ""}]})
    client.post("/v1/classify", content=b"x" * 10_000_000, headers={"content-type": "text/json"})
    client.get("/no-such-page")
    text = client.get("/metrics").text
    # refused before routing: its route; no route at all: one bounded label
    assert 'triage_http_requests_total{method="POST",path="/v1/classify",status="413"}' in text
    assert 'path="other",status="413"' not in text
    assert 'triage_http_requests_total{method="GET",path="other",status="404"}' in text
    assert 'triage_http_requests_total{method="POST",path="/v1/classify",status="200"}' in text
    assert 'triage_http_requests_total{method="POST",path="/v1/classify",status="422"}' in text
    assert 'triage_http_request_duration_seconds_bucket{le="0.025",path="/v1/classify"}' in text
    assert "triage_decisions_total{" in text and "triage_inference_seconds_count" in text
    assert "triage_model_ready 1.0" in text
    # every classified message's novelty is observed; far-out ones are counted
    assert 'triage_message_novelty_bucket{le="2.0"} ' in text
    assert "triage_far_out_messages_total " in text
    observed = float(text.split("triage_message_novelty_count ")[1].split()[0])
    decided = sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("triage_decisions_total{")
    )
    assert observed == decided >= 1


def test_log_error_counters_exist_from_the_start(service):
    """An alert on prediction-log errors has a series at 0 before the first error."""
    text = service[0].get("/metrics").text
    assert 'triage_prediction_log_errors_total{operation="append"} 0.0' in text
    assert 'triage_prediction_log_errors_total{operation="purge"} 0.0' in text


def test_prediction_log_rows_are_masked(service):
    client, log_path = service
    text = "Bestelling NR482913 kwijt, bel me op 06-12345678 of mail jan@example.com"
    response = client.post(
        "/v1/classify", json={"messages": [{"text": text, "id": "log-1", "channel": "whatsapp"}]}
    )
    [p] = response.json()["predictions"]
    [row] = [r for r in PredictionLog(log_path, None).read() if r["message_id"] == "log-1"]
    assert row["text_masked"] is True
    assert "482913" not in row["text"] and "jan@example.com" not in row["text"]
    assert "<EMAIL>" in row["text"] and "<PHONE>" in row["text"]
    assert row["channel"] == "whatsapp"
    for key in ("intent", "intent_prob", "intent_probs", "decision", "action", "lang", "reason"):
        assert row[key] == p[key]
    assert row["intent_threshold"] == p["intent_threshold"]


def test_prediction_log_unmasked_and_off(root, bundle, tmp_path):
    on = create_app(serve_config(root, bundle, tmp_path / "a.sqlite", "serve.pii_mask=false"))
    with TestClient(on) as client:
        wait_ready(client)
        client.post("/v1/classify", json={"messages": [{"text": "mail jan@example.com"}]})
    [row] = PredictionLog(tmp_path / "a.sqlite", None).read()
    assert row["text"] == "mail jan@example.com" and row["text_masked"] is False
    off = create_app(
        serve_config(root, bundle, tmp_path / "b.sqlite", "serve.prediction_log.enabled=false")
    )
    with TestClient(off) as client:
        wait_ready(client)
        assert client.post("/v1/classify", json={"messages": [{"text": "hi"}]}).status_code == 200
    assert not (tmp_path / "b.sqlite").exists()


def test_a_failing_log_is_counted_not_silent(root, bundle, tmp_path, caplog):
    app = create_app(serve_config(root, bundle, tmp_path / "p.sqlite"))
    with TestClient(app) as client:
        wait_ready(client)
        # the log file disappears under the service: make every append fail
        app.state.service.predlog.close()
        (tmp_path / "p.sqlite").unlink()
        (tmp_path / "p.sqlite").mkdir()
        response = client.post("/v1/classify", json={"messages": [{"text": "hi"}]})
        assert response.status_code == 200 and response.headers["x-prediction-log"] == "failed"
        metrics = client.get("/metrics").text
    assert 'triage_prediction_log_errors_total{operation="append"} 1.0' in metrics
    assert "could not append 1 record" in caplog.text


def test_retention_purges_at_startup(root, bundle, tmp_path):
    path = tmp_path / "old.sqlite"
    PredictionLog(path, None).append(
        [
            {
                "text": "old",
                "text_masked": False,
                "decision": "review",
                "created_at": "2020-01-01T00:00:00+00:00",
            }
        ]
    )
    app = create_app(serve_config(root, bundle, path, "serve.prediction_log.retention_days=30"))
    with TestClient(app) as client:
        wait_ready(client)
        client.post("/v1/classify", json={"messages": [{"text": "new"}]})
    assert [r["text"] for r in PredictionLog(path, None).read()] == ["new"]


def test_not_ready_until_loaded(root, bundle, tmp_path):
    release = threading.Event()

    def slow_load() -> Runtime:
        release.wait(10)
        return Runtime.load(bundle)

    app = create_app(serve_config(root, bundle, tmp_path / "p.sqlite"), load=slow_load)
    with TestClient(app) as client:
        assert client.get("/healthz").status_code == 200
        assert client.get("/readyz").status_code == 503
        loading = client.post("/v1/classify", json={"messages": [{"text": "hi"}]})
        assert loading.status_code == 503 and "still loading" in loading.json()["detail"]
        assert client.get("/v1/model").status_code == 503
        release.set()
        wait_ready(client)
        assert client.post("/v1/classify", json={"messages": [{"text": "hi"}]}).status_code == 200


def test_a_bundle_that_fails_to_load_keeps_readyz_503(root, tmp_path):
    app = create_app(serve_config(root, tmp_path / "no-bundle", tmp_path / "p.sqlite"))
    with TestClient(app) as client:
        deadline = time.monotonic() + 10
        while app.state.service.load_error is None and time.monotonic() < deadline:
            time.sleep(0.02)
        ready = client.get("/readyz")
        assert ready.status_code == 503 and "failed to load" in ready.json()["detail"]
        assert "triage export" in ready.json()["detail"]


def test_a_rollout_state_that_cannot_be_opened_keeps_readyz_503_and_says_why(
    root, bundle, tmp_path
):
    """Opening the shared rollout state is part of loading: its failure is reported, not a
    load thread that dies and a service that says "still loading" for ever."""
    state_url = f"sqlite:///{tmp_path}/no-such-dir/state.sqlite"
    scfg = serve_config(
        root, bundle, tmp_path / "p.sqlite", f"serve.rollout.state_url='{state_url}'"
    )
    app = create_app(scfg)
    with TestClient(app) as client:
        deadline = time.monotonic() + 30
        while app.state.service.load_error is None:
            assert time.monotonic() < deadline, client.get("/readyz").json()
            time.sleep(0.05)
        ready = client.get("/readyz")
        assert ready.status_code == 503 and "rollout state failed to load" in ready.json()["detail"]
        assert "unable to open database file" in ready.json()["detail"]


def test_serve_command_fails_clearly_without_a_bundle(tmp_path, capsys):
    assert main(["serve", f"serve.bundle={tmp_path}/none"]) == 1
    assert "not a model bundle" in capsys.readouterr().err

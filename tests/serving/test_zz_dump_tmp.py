import json, shutil, sys
from pathlib import Path
from fastapi.testclient import TestClient
from tests.serving.test_api import serve_config, wait_ready
from triage.serving.api import create_app

OUT = Path(sys.argv[-1]) if False else Path(__import__("os").environ["DUMP"])


def test_dump(root, bundle, pipeline, tmp_path):
    _cfg, tmp, _ = pipeline
    OUT.mkdir(parents=True, exist_ok=True)
    for name in ("manifest.json", "model_card.md", "routing.json", "tokenizer.json"):
        shutil.copy(bundle / name, OUT / name)
    shutil.copy(tmp / "export.json", OUT / "export.json")
    app = create_app(serve_config(root, bundle, tmp_path / "p.sqlite"))
    with TestClient(app) as client:
        wait_ready(client)
        (OUT / "openapi.json").write_text(client.get("/openapi.json").text)
        (OUT / "model.json").write_text(client.get("/v1/model").text)
        r = client.post(
            "/v1/classify",
            json={
                "messages": [
                    {"text": "Waar blijft mijn pakket?", "id": "x"},
                    {"text": "love it", "id": "y", "lang": "en"},
                ]
            },
        )
        (OUT / "classify.json").write_text(r.text)
        client.post(
            "/v1/classify", content=b"x" * 10_000_000, headers={"content-type": "application/json"}
        )
        client.get("/nope")
        (OUT / "metrics.txt").write_text(client.get("/metrics").text)

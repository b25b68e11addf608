"""What a shadow model costs the answers: the service with no challenger, with a shadow
(``serve.shadow_bundle``, the same bundle again unless ``--shadow``), and with a broken shadow
bundle, side by side in one run, under ``--clients`` loopback clients at a bounded total rate.
Prints p50/p99 latency, failed requests and the shadow counters from ``/metrics``.

Not a test: numbers depend on the machine. Never run it beside a training run.

    .venv/bin/python benchmarks/rollout.py
    .venv/bin/python benchmarks/rollout.py --shadow models/other/onnx --rate 20 --duration 30
"""

from __future__ import annotations

import argparse
import asyncio
import re
import tempfile
import time
from pathlib import Path

import httpx
import loopback
from loopback import ROOT
from serve_benchmark import load_test

TEXTS = [
    "Waar blijft mijn pakket? Ik heb het vorige week besteld.",
    "Top service, dank jullie wel!",
    "Where is my refund? It has been two weeks.",
    "Ik wil mijn abonnement opzeggen.",
    "Do you have a discount code for students?",
]


def shadow_counts(url: str) -> dict[str, float]:
    text = httpx.get(f"{url}/metrics").text
    return {
        m.group(1): float(m.group(2))
        for m in re.finditer(r'triage_shadow_messages_total\{outcome="(\w+)"\} ([0-9.e+]+)', text)
    }


def wait_for_challenger(url: str, timeout: float = 60.0) -> None:
    """Until the challenger has loaded or failed to (it loads after the champion)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        challenger = httpx.get(f"{url}/v1/model").json()["challenger"]
        if challenger["model_version"] or challenger["error"]:
            return
        time.sleep(0.2)
    raise RuntimeError("the challenger neither loaded nor failed")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bundle", type=Path, default=ROOT / "models" / "onnx")
    parser.add_argument("--shadow", type=Path, help="the challenger (default: --bundle again)")
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--rate", type=float, default=20.0, help="total requests/s offered")
    parser.add_argument("--duration", type=float, default=30.0)
    args = parser.parse_args()
    shadow = args.shadow or args.bundle
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        broken = Path(tmp) / "broken"
        broken.mkdir()
        (broken / "manifest.json").write_text("{not a manifest", encoding="utf-8")
        for k, (name, overrides) in enumerate(
            (
                ("no shadow", []),
                ("shadow", [f"serve.shadow_bundle={shadow}"]),
                ("broken shadow bundle", [f"serve.shadow_bundle={broken}"]),
                ("no shadow (again)", []),
            )
        ):
            log_path = Path(tmp) / f"predictions{k}.sqlite"
            with loopback.running_service(args.bundle, log_path, *overrides) as url:
                if overrides:
                    wait_for_challenger(url)
                result = asyncio.run(
                    load_test(f"{url}/v1/classify", TEXTS, args.clients, args.rate, args.duration)
                )
                counts = shadow_counts(url)
            failed = sum(n for status, n in result["statuses"].items() if status != 200)
            rows.append((name, result, failed, counts))
    print("| service | p50 ms | p99 ms | requests | failed | shadow scored / dropped / failed |")
    print("|---|---|---|---|---|---|")
    for name, result, failed, counts in rows:
        shown = " / ".join(f"{counts.get(k, 0):.0f}" for k in ("scored", "dropped", "failed"))
        print(
            f"| {name} | {result['p50_ms']:.1f} | {result['p99_ms']:.1f} | {result['n']} | "
            f"{failed} | {shown} |"
        )
    base = (rows[0][1]["p50_ms"] + rows[3][1]["p50_ms"]) / 2
    print(f"\nshadow p50 cost: {100 * (rows[1][1]['p50_ms'] / base - 1):+.1f}% (target <= 10%)")


if __name__ == "__main__":
    main()

"""Serving benchmarks, side by side in one run: bundle size, runtime import and load time,
throughput against PyTorch eager, single-message latency, and the HTTP service under load.

Not a test: numbers depend on the machine. Prints a Markdown table (and ``--json`` writes the
numbers). Every measurement runs on the same messages (the prepared val/calib/test splits):

- **import**: ``import triage.serving.runtime`` timed inside fresh interpreters (median of 5); also
  checks that torch and transformers were not imported.
- **load**: ``Runtime.load(bundle)`` in fresh interpreters (median of 3; includes the SHA-256
  check of every file and the warm-up call).
- **throughput, batch 32**: the full runtime path (clean, tokenise, onnxruntime, per-language
  temperatures, thresholds, routing; language detection when ``--detect``) against PyTorch
  eager on the checkpoint the bundle came from (``TransformerPredictor.logits``: tokenise,
  length-sorted batches of 32, ``inference_mode``), both with one thread per physical core;
  median of 3 passes over all messages.
- **latency, one message**: ``runtime.classify([text])`` for messages of at most 64 tokens.
- **HTTP**: ``triage serve`` in a subprocess (uvicorn, prediction log on, in a temp folder), and
  ``--clients`` concurrent async httpx clients sending one message per request at a bounded total
  rate (``--rate`` requests/s, each client on its own schedule), for ``--duration`` seconds.

    .venv/bin/python benchmarks/serve_benchmark.py
    .venv/bin/python benchmarks/serve_benchmark.py --bundle models/onnx \\
        --checkpoint models/checkpoint \\
        --data data/processed/authored --clients 20 --rate 40 --duration 30
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import loopback
import numpy as np
import pandas as pd
from loopback import ROOT, percentiles


def fresh_python(code: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    return done.stdout.strip()


def import_time(runs: int = 5) -> tuple[float, list[str]]:
    code = (
        "import sys, time; t = time.perf_counter(); import triage.serving.runtime; "
        "d = time.perf_counter() - t; "
        "print(d, [m for m in sys.modules if m.split('.')[0] in ('torch', 'transformers')])"
    )
    times, heavy = [], []
    for _ in range(runs):
        seconds, modules = fresh_python(code).split(" ", 1)
        times.append(float(seconds))
        heavy = eval(modules)  # a printed list of module names
    return statistics.median(times), heavy


def load_time(bundle: Path, runs: int = 3) -> float:
    code = (
        "import time; t = time.perf_counter(); from triage.serving.runtime import Runtime; "
        f"Runtime.load({str(bundle)!r}); print(time.perf_counter() - t)"
    )
    return statistics.median(float(fresh_python(code)) for _ in range(runs))


def throughput(fn, n: int, passes: int = 3) -> float:
    fn()  # warm-up pass
    times = []
    for _ in range(passes):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return n / statistics.median(times)


async def load_test(url: str, texts: list[str], clients: int, rate: float, duration: float):
    """``clients`` concurrent clients, together at most ``rate`` requests/s: client k sends at
    ``t0 + k/rate + j*clients/rate`` (or as soon as its previous response is back, if later)."""
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    interval = clients / rate

    async def client(k: int, http: httpx.AsyncClient, t0: float) -> None:
        j = 0
        while True:
            due = t0 + k / rate + j * interval
            if due - t0 > duration:
                return
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            text = texts[(k * 7919 + j) % len(texts)]
            start = time.perf_counter()
            response = await http.post(url, json={"messages": [{"text": text}]})
            latencies.append(time.perf_counter() - start)
            statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
            j += 1

    https = [loopback.client(k) for k in range(clients)]  # one address per client
    try:
        for k, text in enumerate(texts[:20]):  # warm the connections and the server
            await https[k % clients].post(url, json={"messages": [{"text": text}]})
        t0 = time.perf_counter() + 0.1
        await asyncio.gather(*(client(k, https[k], t0) for k in range(clients)))
        elapsed = time.perf_counter() - t0
    finally:
        for http in https:
            await http.aclose()
    return {
        **percentiles(latencies),
        "achieved_rps": len(latencies) / elapsed,
        "statuses": statuses,
    }


def http_benchmark(bundle: Path, texts: list[str], args) -> dict:
    with (
        tempfile.TemporaryDirectory() as tmp,
        loopback.running_service(bundle, Path(tmp) / "predictions.sqlite") as url,
    ):
        return asyncio.run(
            load_test(f"{url}/v1/classify", texts, args.clients, args.rate, args.duration)
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bundle", type=Path, default=ROOT / "models" / "onnx")
    parser.add_argument("--checkpoint", type=Path, default=ROOT / "models" / "checkpoint")
    parser.add_argument("--data", type=Path, default=ROOT / "data" / "processed" / "authored")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--latency-runs", type=int, default=500)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--rate", type=float, default=40.0, help="total requests/s offered")
    parser.add_argument("--duration", type=float, default=30.0, help="seconds of HTTP load")
    parser.add_argument("--detect", action="store_true", help="detect languages in throughput")
    parser.add_argument("--skip-torch", action="store_true")
    parser.add_argument("--skip-http", action="store_true")
    parser.add_argument("--json", type=Path, help="also write the numbers here")
    args = parser.parse_args()

    from triage.serving.bundle import read_manifest
    from triage.serving.runtime import Runtime, physical_cores

    manifest = read_manifest(args.bundle)
    frame = pd.concat(
        [pd.read_parquet(args.data / f"{split}.parquet") for split in ("val", "calib", "test")]
    )
    texts, langs = frame["text"].tolist(), frame["lang"].tolist()
    threads = physical_cores()
    results: dict = {
        "bundle": str(args.bundle),
        "model_version": manifest.model_version,
        "quantization": manifest.quantization,
        "vocab_trimmed": manifest.vocab_trimmed,
        "messages": len(texts),
        "threads": threads,
        "bundle_mb": sum(f.stat().st_size for f in args.bundle.iterdir()) / 1e6,
        "model_onnx_mb": (args.bundle / "model.onnx").stat().st_size / 1e6,
    }
    results["import_s"], heavy = import_time()
    results["import_pulls_torch"] = bool(heavy)
    results["load_s"] = load_time(args.bundle)

    runtime = Runtime.load(args.bundle, threads=threads)
    run_langs = None if args.detect else langs
    results["runtime_msg_s"] = throughput(
        lambda: runtime.classify(texts, run_langs, batch_size=args.batch_size), len(texts)
    )
    lengths = [
        len(e.ids) for e in runtime.tokenizer.encode_batch([runtime.prefix + t for t in texts])
    ]
    short = [t for t, n in zip(texts, lengths, strict=True) if n <= args.max_tokens]
    results["latency_tokens_mean"] = float(np.mean([n for n in lengths if n <= args.max_tokens]))
    for text in short[:20]:
        runtime.classify([text])
    samples = []
    for k in range(args.latency_runs):
        text = short[k % len(short)]
        start = time.perf_counter()
        runtime.classify([text])
        samples.append(time.perf_counter() - start)
    results["runtime_latency"] = percentiles(samples)

    if not args.skip_torch:
        import torch

        from triage.modeling.model import TransformerPredictor

        torch.set_num_threads(threads)
        predictor = TransformerPredictor(args.checkpoint, batch_size=args.batch_size)
        run_id = (
            (args.checkpoint / "run_id").read_text().strip()
            if (args.checkpoint / "run_id").is_file()
            else None
        )
        results["same_model"] = run_id is not None and run_id == manifest.run_id
        results["torch_msg_s"] = throughput(lambda: predictor.logits(texts), len(texts))
        results["speedup"] = results["runtime_msg_s"] / results["torch_msg_s"]
        del predictor

    if not args.skip_http:
        results["http"] = http_benchmark(args.bundle, short, args)

    print_table(results, args)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


def print_table(r: dict, args) -> None:
    lat = r["runtime_latency"]
    rows = [
        (
            "bundle",
            f"{r['bundle_mb']:.1f} MB (model.onnx {r['model_onnx_mb']:.1f} MB), "
            f"quantization {r['quantization']}, vocabulary trimmed {r['vocab_trimmed']}",
            "",
        ),
        (
            "import triage.serving.runtime",
            f"{r['import_s']:.3f} s"
            + (" (pulled in torch!)" if r["import_pulls_torch"] else ", no torch"),
            "< 1 s",
        ),
        ("Runtime.load", f"{r['load_s']:.2f} s", "< 3 s"),
        (f"runtime throughput, batch {args.batch_size}", f"{r['runtime_msg_s']:.0f} msg/s", ""),
    ]
    if "torch_msg_s" in r:
        rows += [
            (
                f"PyTorch eager, batch {args.batch_size}",
                f"{r['torch_msg_s']:.0f} msg/s"
                + ("" if r["same_model"] else " (checkpoint run id differs from the bundle's!)"),
                "",
            ),
            ("speed-up", f"{r['speedup']:.2f}x", ">= 3x"),
        ]
    rows += [
        (
            f"runtime latency, 1 message <= {args.max_tokens} tokens (mean "
            f"{r['latency_tokens_mean']:.0f})",
            f"p50 {lat['p50_ms']:.1f} ms, p99 {lat['p99_ms']:.1f} ms (n={lat['n']})",
            "p50 <= 15, p99 <= 40 ms",
        ),
    ]
    if "http" in r:
        h = r["http"]
        rows.append(
            (f"HTTP, {args.clients} clients, {args.rate:g} req/s offered",
             f"p50 {h['p50_ms']:.1f} ms, p90 {h['p90_ms']:.1f}, p99 {h['p99_ms']:.1f} ms; "
             f"{h['achieved_rps']:.1f} req/s, statuses {h['statuses']}", "p50 <= 25 ms")
        )  # fmt: skip
    print(f"\nmodel {r['model_version']}, {r['messages']} messages, {r['threads']} threads\n")
    print("| measurement | result | target |\n|---|---|---|")
    for name, value, target in rows:
        print(f"| {name} | {value} | {target} |")


if __name__ == "__main__":
    main()

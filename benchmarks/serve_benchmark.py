"""Serving benchmarks, side by side in one run on one machine: PyTorch eager on the reference
checkpoint (the 12-layer model) and every bundle given: size, load time, throughput at batch
32 and the speed-up over eager, single-message latency; the import time of the runtime; the
CPU model and the instruction-set flags the ratios depend on (AVX2, AVX-512 VNNI, AVX512_BF16,
AMX); optionally the HTTP service under load on the first bundle.

Not a test: numbers depend on the machine, and on a 2-core machine nothing else may run beside
it. Prints Markdown tables (and ``--json`` writes the numbers). Every measurement runs on the
same messages (the prepared val/calib/test splits):

- **import**: ``import triage.serving.runtime`` timed inside fresh interpreters (median of 5); also
  checks that torch and transformers were not imported.
- **load**: ``Runtime.load(bundle)`` in fresh interpreters (median of 3; includes the SHA-256
  check of every file and the warm-up call).
- **throughput, batch 32**: the full runtime path (clean, tokenise, the bundle's backend,
  per-language temperatures, thresholds, routing; language detection when ``--detect``)
  against PyTorch eager on the reference checkpoint (``TransformerPredictor.logits``: tokenise,
  length-sorted batches of 32, ``inference_mode``), all with one thread per physical core;
  median of 3 passes over all messages.
- **latency, one message**: ``runtime.classify([text])`` for messages of at most 64 tokens.
- **HTTP** (``--http``): ``triage serve`` in a subprocess (uvicorn, prediction log on, in a
  temp folder) on the first bundle, and ``--clients`` concurrent async httpx clients sending one
  message per request at a bounded total rate (``--rate`` requests/s), for ``--duration`` s.

    .venv/bin/python benchmarks/serve_benchmark.py            # models/onnx against eager
    .venv/bin/python benchmarks/serve_benchmark.py --reference models/checkpoint \\
        --bundle l12_fp32=models/compact/l12_fp32 --bundle shipped=models/onnx \\
        --bundle l6=models/student/l6/onnx --http
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


CPU_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_int8")


def cpu() -> dict:
    """The CPU model and the flags the speed ratios depend on (Linux ``/proc/cpuinfo``)."""
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return {"model": "unknown", "flags": {}}
    model = next((line.split(":", 1)[1].strip() for line in info.splitlines()
                  if line.startswith("model name")), "unknown")  # fmt: skip
    flags = set(next((line.split(":", 1)[1].split() for line in info.splitlines()
                      if line.startswith("flags")), []))  # fmt: skip
    return {"model": model, "flags": {f: f in flags for f in CPU_FLAGS}}


def bundle_numbers(name: str, bundle: Path, texts, langs, args, threads: int) -> dict:
    """Size, load time, throughput and single-message latency of one bundle."""
    from triage.serving.runtime import Runtime

    runtime = Runtime.load(bundle, threads=threads)
    manifest = runtime.manifest
    out = {
        "name": name,
        "bundle": str(bundle),
        "model_version": manifest.model_version,
        "run_id": manifest.run_id,
        "backend": manifest.backend,
        "precision": runtime.precision,
        "quantization": manifest.quantization,
        "vocab_pieces": runtime.tokenizer.get_vocab_size(),
        "bundle_mb": sum(f.stat().st_size for f in bundle.iterdir()) / 1e6,
        "load_s": load_time(bundle),
    }
    run_langs = None if args.detect else langs
    out["msg_s"] = throughput(
        lambda: runtime.classify(texts, run_langs, batch_size=args.batch_size), len(texts)
    )
    lengths = [
        len(e.ids) for e in runtime.tokenizer.encode_batch([runtime.prefix + t for t in texts])
    ]
    short = [t for t, n in zip(texts, lengths, strict=True) if n <= args.max_tokens]
    out["short"] = short
    for text in short[:20]:
        runtime.classify([text])
    samples = []
    for k in range(args.latency_runs):
        text = short[k % len(short)]
        start = time.perf_counter()
        runtime.classify([text])
        samples.append(time.perf_counter() - start)
    out["latency"] = percentiles(samples)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--bundle",
        action="append",
        help="NAME=FOLDER (repeat); default: shipped=models/onnx",
    )
    parser.add_argument(
        "--reference",
        type=Path,
        default=ROOT / "models" / "checkpoint",
        help="the checkpoint PyTorch eager runs (the 12-layer model)",
    )
    parser.add_argument("--data", type=Path, default=ROOT / "data" / "processed" / "authored")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--latency-runs", type=int, default=500)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--rate", type=float, default=40.0, help="total requests/s offered")
    parser.add_argument("--duration", type=float, default=30.0, help="seconds of HTTP load")
    parser.add_argument("--detect", action="store_true", help="detect languages in throughput")
    parser.add_argument("--skip-torch", action="store_true")
    parser.add_argument("--http", action="store_true", help="the HTTP load test (first bundle)")
    parser.add_argument("--json", type=Path, help="also write the numbers here")
    args = parser.parse_args()

    from triage.serving.runtime import physical_cores

    bundles = [b.split("=", 1) for b in (args.bundle or [f"shipped={ROOT / 'models' / 'onnx'}"])]
    frame = pd.concat(
        [pd.read_parquet(args.data / f"{split}.parquet") for split in ("val", "calib", "test")]
    )
    texts, langs = frame["text"].tolist(), frame["lang"].tolist()
    threads = physical_cores()
    results: dict = {"cpu": cpu(), "messages": len(texts), "threads": threads}
    results["import_s"], heavy = import_time()
    results["import_pulls_torch"] = bool(heavy)

    if not args.skip_torch:
        import torch

        from triage.modeling.model import TransformerPredictor

        torch.set_num_threads(threads)
        predictor = TransformerPredictor(args.reference, batch_size=args.batch_size)
        results["reference"] = {
            "checkpoint": str(args.reference),
            "layers": predictor.model.encoder.config.num_hidden_layers,
            "msg_s": throughput(lambda: predictor.logits(texts), len(texts)),
        }
        del predictor

    results["bundles"] = []
    for name, folder in bundles:
        numbers = bundle_numbers(name, Path(folder), texts, langs, args, threads)
        if "reference" in results:
            numbers["speedup"] = numbers["msg_s"] / results["reference"]["msg_s"]
        results["bundles"].append(numbers)
    if args.http:
        first = results["bundles"][0]
        results["http"] = http_benchmark(Path(first["bundle"]), first["short"], args)
    for numbers in results["bundles"]:
        del numbers["short"]

    print_table(results, args)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


def print_table(r: dict, args) -> None:
    flags = ", ".join(f"{f} {'yes' if v else 'no'}" for f, v in r["cpu"]["flags"].items())
    print(f"\nCPU: {r['cpu']['model']} ({flags}); {r['threads']} threads, "
          f"{r['messages']} messages")  # fmt: skip
    print(f"import triage.serving.runtime: {r['import_s']:.3f} s"
          + (" (pulled in torch!)" if r["import_pulls_torch"] else ", no torch"))  # fmt: skip
    if "reference" in r:
        ref = r["reference"]
        print(f"PyTorch eager ({ref['layers']} layers, {ref['checkpoint']}), batch "
              f"{args.batch_size}: {ref['msg_s']:.0f} msg/s (the 1.00x reference)")  # fmt: skip
    print(
        f"\n| bundle | backend (precision) | quantization | pieces | size | load | batch "
        f"{args.batch_size} | vs eager | 1 message <= {args.max_tokens} tokens: p50 / p99 |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for b in r["bundles"]:
        lat = b["latency"]
        speedup = f"{b['speedup']:.2f}x" if "speedup" in b else "-"
        print(
            f"| {b['name']} | {b['backend']} ({b['precision']}) | {b['quantization']} | "
            f"{b['vocab_pieces']:,} | {b['bundle_mb']:.1f} MB | {b['load_s']:.2f} s | "
            f"{b['msg_s']:.0f} msg/s | {speedup} | {lat['p50_ms']:.1f} / {lat['p99_ms']:.1f} ms |"
        )
    if "http" in r:
        h = r["http"]
        print(f"\nHTTP ({r['bundles'][0]['name']}), {args.clients} clients, {args.rate:g} req/s "
              f"offered: p50 {h['p50_ms']:.1f} ms, p90 {h['p90_ms']:.1f}, p99 {h['p99_ms']:.1f} "
              f"ms; {h['achieved_rps']:.1f} req/s, statuses {h['statuses']}")  # fmt: skip


if __name__ == "__main__":
    main()

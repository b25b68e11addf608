"""The schema of the configuration: one dataclass per config group (``configs/<group>/``),
against which every composed config is validated and into which it is converted."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from omegaconf import MISSING

from triage.routing import Action, Priority


class OnInvalid(StrEnum):
    """What to do with a row whose text is empty or whose label is unknown."""

    error = "error"  # stop with a message naming the file and row (user and authored data)
    drop = "drop"  # drop the row and count it in the data report (noisy public data)


@dataclass
class SourceConfig:
    """One input source. Relative paths resolve against ``paths.public_data`` for public kinds
    and against the project root for ``file``."""

    kind: str = "file"  # a kind of triage.data.sources.SOURCE_KINDS
    path: str = MISSING
    # csv | jsonl | parquet; None infers it from the file suffix (kind=file only)
    format: str | None = None
    # schema field -> column name in the file, e.g. {text: message, intent: label}
    columns: dict[str, str] = field(default_factory=dict)
    # source label -> taxonomy label; null leaves the head unlabelled for that row.
    # None (no map at all) means the source's labels are used as they are.
    intent_map: dict[str, str | None] | None = None
    sentiment_map: dict[str, str | None] | None = None
    lang: str | None = None  # fixed language of the whole source; None detects it per row
    # keep at most this many rows per mapped label (a seeded sample); None keeps all
    max_per_label: int | None = None
    on_invalid: OnInvalid = OnInvalid.error
    # kind=file only: a missing path, or a folder with no data files yet, is skipped (the audit's
    # feedback folder before the first export) instead of being an error
    optional: bool = False
    # adapter-specific settings (tweeteval task, fewshot dataset and splits, hub config name, ...)
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class SplitConfig:
    """Shares of the rows without a fixed split. calib is for temperature and thresholds only."""

    train: float = 0.7
    val: float = 0.1
    calib: float = 0.1
    test: float = 0.1


@dataclass
class HeadConfig:
    """One classification head. ``labels: null`` infers the label set from the data."""

    labels: list[str] | None = None


@dataclass
class DataConfig:
    name: str = MISSING
    heads: dict[str, HeadConfig] = field(default_factory=dict)
    languages: list[str] = field(default_factory=lambda: ["nl", "en"])
    sources: dict[str, SourceConfig] = field(default_factory=dict)
    split: SplitConfig = field(default_factory=SplitConfig)
    seed: int = 13
    pii_mask: bool = False
    # sources whose messages belong to no class (CLINC150's out-of-scope queries)
    out_of_scope_sources: list[str] = field(default_factory=list)
    out_dir: str = MISSING


@dataclass
class ModelConfig:
    """Types only; the values and what they mean are in ``configs/model/e5_small.yaml``."""

    encoder: str = MISSING
    cache_dir: str = MISSING
    input_prefix: str = MISSING
    max_length: int = MISSING
    dropout: float = MISSING
    layers: list[int] | None = None


@dataclass
class DistillConfig:
    """Types only; the values and what they mean are in ``configs/train/default.yaml``."""

    teacher: str | None = MISSING
    weight: float = MISSING
    temperature: float = MISSING
    init_from_teacher: bool = MISSING
    unlabelled: dict[str, SourceConfig] = field(default_factory=dict)
    max_unlabelled: int = MISSING


@dataclass
class TrainConfig:
    """Types only; the values and what they mean are in ``configs/train/default.yaml``."""

    epochs: int = MISSING
    batch_size: int = MISSING
    grad_accum: int = MISSING
    lr: float = MISSING
    head_lr: float = MISSING
    weight_decay: float = MISSING
    warmup_ratio: float = MISSING
    max_grad_norm: float = MISSING
    freeze_embeddings: bool = MISSING
    freeze_layers: int = MISSING
    label_smoothing: float = MISSING
    augment: float = MISSING
    class_weights: bool = MISSING
    head_weights: dict[str, float] = MISSING
    monitor: str = MISSING
    patience: int = MISSING
    seed: int = MISSING
    mixed_precision: str = MISSING
    max_train_rows: int | None = MISSING
    eval_batch_size: int = MISSING
    init_encoder: str | None = MISSING
    distill: DistillConfig = field(default_factory=DistillConfig)
    out_dir: str = MISSING


@dataclass
class BaselineConfig:
    """Types only; the values and what they mean are in ``configs/baseline/default.yaml``."""

    c: float = MISSING
    seed: int = MISSING
    out_dir: str = MISSING


@dataclass
class NoveltyConfig:
    """Types only; the values and what they mean are in ``configs/calibrate/default.yaml``."""

    enabled: bool = MISSING
    k: int = MISSING
    quantile: float = MISSING
    max_bank: int = MISSING


@dataclass
class CalibrateConfig:
    """Types only; the values and what they mean are in ``configs/calibrate/default.yaml``."""

    fpr_target: float = MISSING
    per_language_temperatures: bool = MISSING
    per_language_thresholds: bool = MISSING
    min_rows_per_language: int = MISSING
    min_decisions: int = MISSING
    margin: float = MISSING
    bound: str = MISSING
    novelty: NoveltyConfig = field(default_factory=NoveltyConfig)
    checkpoint: str = MISSING
    out_file: str = MISSING


@dataclass
class EvaluateConfig:
    """Types only; the values and what they mean are in ``configs/evaluate/default.yaml``."""

    split: str = MISSING
    checkpoint: str = MISSING
    calibration: str = MISSING
    compare_with: str | None = MISSING
    bootstrap: int = MISSING
    n_bins: int = MISSING
    out_dir: str = MISSING
    extra: list[str] = field(default_factory=list)
    sets: dict[str, SourceConfig] = field(default_factory=dict)


@dataclass
class ExportGateConfig:
    """Types only; see ``configs/export/default.yaml``."""

    top1_agreement: float = MISSING
    macro_f1_drop: float = MISSING
    fpr_rise: float = MISSING
    ece_rise: float = MISSING


@dataclass
class ExportVocabConfig:
    """Types only; the values and what they mean are in ``configs/export/default.yaml``."""

    pieces: str = MISSING
    keep_latin: bool = MISSING
    report: str = MISSING
    corpus: dict[str, SourceConfig] = field(default_factory=dict)
    heldout: list[str] = field(default_factory=list)


@dataclass
class ExportStaticInt8Config:
    """Types only; the values and what they mean are in ``configs/export/default.yaml``."""

    enabled: bool = MISSING
    calibration_messages: int = MISSING
    split: str = MISSING
    real_text: list[str] = field(default_factory=list)
    real_text_messages: int = MISSING
    max_drop: float = MISSING
    max_reverted: int = MISSING


@dataclass
class ExportConfig:
    """Types only; the values and what they mean are in ``configs/export/default.yaml``."""

    checkpoint: str = MISSING
    calibration: str = MISSING
    split: str = MISSING
    opset: int = MISSING
    parity_atol: float = MISSING
    quantize: bool = MISSING
    int8_storage: bool = MISSING
    static_int8: ExportStaticInt8Config = field(default_factory=ExportStaticInt8Config)
    trim_vocab: bool = MISSING
    vocab: ExportVocabConfig = field(default_factory=ExportVocabConfig)
    backend: str = MISSING
    gate_sets: list[str] = field(default_factory=list)
    gate: ExportGateConfig = field(default_factory=ExportGateConfig)
    n_bins: int = MISSING
    out_dir: str = MISSING
    report: str = MISSING


@dataclass
class RouteRuleConfig:
    """One routing rule; see ``configs/routing/default.yaml``."""

    action: Action = MISSING
    priority: Priority = MISSING
    automatic: bool = True


@dataclass
class NegativeRuleConfig:
    """Types only; see ``configs/routing/default.yaml``."""

    label: str = MISSING
    block_auto_reply_at: float = MISSING
    raise_priority_at: float = MISSING
    raise_priority_for: list[Action] = MISSING


@dataclass
class AutomationConfig:
    """The pilot list; see ``configs/routing/default.yaml``."""

    enabled: list[str] | None = None


@dataclass
class RoutingConfig:
    """The routing table (rules in ``triage.routing``); values in ``configs/routing/``."""

    intents: dict[str, RouteRuleConfig] = MISSING
    default: RouteRuleConfig = MISSING
    not_confident: RouteRuleConfig = MISSING
    negative: NegativeRuleConfig = MISSING
    automation: AutomationConfig = field(default_factory=lambda: AutomationConfig())


@dataclass
class PredictionLogConfig:
    """Types only; see ``configs/serve/default.yaml``."""

    enabled: bool = MISSING
    path: str = MISSING
    url: str | None = MISSING
    retention_days: int | None = MISSING


@dataclass
class FairnessConfig:
    """Types only; the values and what they mean are in ``configs/serve/default.yaml``."""

    chunk_tokens: int = MISSING
    max_client_requests: int = MISSING
    max_queued_messages: int = MISSING


@dataclass
class TimeoutsConfig:
    """Types only; the values and what they mean are in ``configs/serve/default.yaml``."""

    keep_alive: float = MISSING
    request_head: float = MISSING
    request_body: float = MISSING


@dataclass
class RolloutConfig:
    """Types only; the values and what they mean are in ``configs/serve/default.yaml``."""

    state_file: str = MISSING
    state_url: str | None = MISSING
    poll_seconds: float = MISSING
    admin_token: str | None = MISSING


@dataclass
class ServeConfig:
    """Types only; the values and what they mean are in ``configs/serve/default.yaml``."""

    bundle: str = MISSING
    host: str = MISSING
    port: int = MISSING
    threads: int | None = MISSING
    verify_bundle: bool = MISSING
    batch_size: int = MISSING
    fairness: FairnessConfig = field(default_factory=FairnessConfig)
    timeouts: TimeoutsConfig = field(default_factory=TimeoutsConfig)
    max_connections: int = MISSING
    max_batch: int = MISSING
    max_text_chars: int = MISSING
    pii_mask: bool = MISSING
    prediction_log: PredictionLogConfig = field(default_factory=PredictionLogConfig)
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    shadow_bundle: str | None = MISSING
    canary_share: float = MISSING
    workers: int = MISSING
    log_level: str = MISSING


@dataclass
class ClassifyConfig:
    """Types only; the values and what they mean are in ``configs/classify/default.yaml``."""

    bundle: str = MISSING
    input: str | None = MISSING
    output: str | None = MISSING
    format: str | None = MISSING
    text_column: str = MISSING
    id_column: str | None = MISSING
    lang_column: str | None = MISSING
    on_empty: OnInvalid = MISSING
    batch_size: int = MISSING
    threads: int | None = MISSING


@dataclass
class TrackingConfig:
    """Types only; the values and what they mean are in ``configs/tracking/default.yaml``."""

    enabled: bool = MISSING
    uri: str | None = MISSING
    experiment: str = MISSING
    run_name: str | None = MISSING


@dataclass
class SweepSamplerConfig:
    """Types only; see ``configs/sweep/default.yaml``."""

    seed: int = MISSING
    n_startup_trials: int = MISSING


@dataclass
class SweepPrunerConfig:
    """Types only; see ``configs/sweep/default.yaml``."""

    name: str = MISSING
    n_startup_trials: int = MISSING
    n_warmup_steps: int = MISSING


@dataclass
class SweepObjectiveConfig:
    """Types only; see ``configs/sweep/default.yaml``."""

    head: str = MISSING
    metric: str = MISSING
    tie_breaker: str = MISSING
    tie_weight: float = MISSING
    penalty: float = MISSING


@dataclass
class SweepConfig:
    """Types only; the values and what they mean are in ``configs/sweep/default.yaml``."""

    study_name: str = MISSING
    storage: str = MISSING
    n_trials: int = MISSING
    n_jobs: int = MISSING
    launcher: str = MISSING
    slurm: dict[str, Any] = MISSING
    heartbeat_s: int = MISSING
    sampler: SweepSamplerConfig = field(default_factory=SweepSamplerConfig)
    pruner: SweepPrunerConfig = field(default_factory=SweepPrunerConfig)
    objective: SweepObjectiveConfig = field(default_factory=SweepObjectiveConfig)
    overrides: list[str] = MISSING
    params: list[str] = MISSING
    keep_checkpoints: bool = MISSING
    out_dir: str = MISSING


@dataclass
class AuditSampleConfig:
    """Types only; the values and what they mean are in ``configs/audit/default.yaml``."""

    since: str | None = MISSING
    until: str | None = MISSING
    days: int = MISSING
    size: int = MISSING
    control_share: float = MISSING
    strata: dict[str, float] = MISSING
    near_band: float = MISSING
    low_confidence_below: float = MISSING
    negative_label: str = MISSING
    rare_share: float = MISSING
    dual_share: float = MISSING
    seed: int = MISSING


@dataclass
class AuditReviewerConfig:
    """Types only; see ``configs/audit/default.yaml``."""

    name: str | None = MISSING
    adjudicator: bool = MISSING
    rotate: bool = MISSING


@dataclass
class AuditAppConfig:
    """Types only; see ``configs/audit/default.yaml``."""

    host: str = MISSING
    port: int = MISSING
    claim_minutes: float = MISSING
    secure_cookie: bool = MISSING


@dataclass
class AuditTargetsConfig:
    """Types only; see ``configs/audit/default.yaml``."""

    accuracy: dict[str, float] = MISSING
    auto_fpr: float | None = MISSING
    moderation_precision: float | None = MISSING
    moderation_actions: list[str] = MISSING
    kappa: float | None = MISSING
    ece: float | None = MISSING
    drift_psi: float | None = MISSING


@dataclass
class AuditReportConfig:
    """Types only; see ``configs/audit/default.yaml``."""

    targets: AuditTargetsConfig = field(default_factory=AuditTargetsConfig)
    alpha: float = MISSING
    bootstrap: int = MISSING
    n_bins: int = MISSING
    train_data: str | None = MISSING
    reference_predictions: str | None = MISSING
    out_dir: str = MISSING


@dataclass
class AuditExportConfig:
    """Types only; see ``configs/audit/default.yaml``."""

    out_dir: str = MISSING
    dvc_add: bool = MISSING


@dataclass
class AuditIssuesConfig:
    """Types only; see ``configs/audit/default.yaml``."""

    data_dir: str = MISSING
    splits: list[str] = MISSING
    folds: int = MISSING
    c: float = MISSING
    seed: int = MISSING
    max_rows: int | None = MISSING
    out_file: str = MISSING
    push: bool = MISSING


@dataclass
class AuditLabelStudioConfig:
    """Types only; see ``configs/audit/default.yaml``."""

    action: str = MISSING
    file: str | None = MISSING
    out_dir: str = MISSING


@dataclass
class AuditRolloutConfig:
    """Types only; the values and what they mean are in ``configs/audit/default.yaml``."""

    alpha: float = MISSING
    wrong_auto_target: float = MISSING
    accuracy_tolerance: float = MISSING
    min_reviewed: int = MISSING
    out_dir: str = MISSING
    model_name: str = MISSING
    alias: str = MISSING
    force: bool = MISSING
    cache_dir: str = MISSING


@dataclass
class AuditConfig:
    """Types only; the values and what they mean are in ``configs/audit/default.yaml``."""

    db_url: str = MISSING
    prediction_log: str = MISSING
    batch: str | None = MISSING
    sample: AuditSampleConfig = field(default_factory=AuditSampleConfig)
    reviewer: AuditReviewerConfig = field(default_factory=AuditReviewerConfig)
    app: AuditAppConfig = field(default_factory=AuditAppConfig)
    report: AuditReportConfig = field(default_factory=AuditReportConfig)
    export: AuditExportConfig = field(default_factory=AuditExportConfig)
    issues: AuditIssuesConfig = field(default_factory=AuditIssuesConfig)
    labelstudio: AuditLabelStudioConfig = field(default_factory=AuditLabelStudioConfig)
    rollout: AuditRolloutConfig = field(default_factory=AuditRolloutConfig)


@dataclass
class PathsConfig:
    root: str = MISSING
    public_data: str = MISSING
    models: str = MISSING
    bundle: str = MISSING


@dataclass
class Config:
    paths: PathsConfig = field(default_factory=PathsConfig)
    data: DataConfig = MISSING
    model: ModelConfig = MISSING
    train: TrainConfig = MISSING
    baseline: BaselineConfig = MISSING
    calibrate: CalibrateConfig = MISSING
    evaluate: EvaluateConfig = MISSING
    export: ExportConfig = MISSING
    routing: RoutingConfig = MISSING
    serve: ServeConfig = MISSING
    classify: ClassifyConfig = MISSING
    tracking: TrackingConfig = MISSING
    audit: AuditConfig = MISSING
    # only with `sweep=<space>` (triage sweep, triage sweep-promote)
    sweep: SweepConfig | None = None

"""The model card: the bundle described for people (``model_card.md`` in the bundle)."""

from __future__ import annotations

from triage.pipeline.export.gates import fmt
from triage.serving.bundle import Manifest


def model_card(manifest: Manifest, report: dict) -> str:
    """The bundle described for people: what it is, how it decides, how well, how it was made."""
    m = manifest
    lines = [
        f"# social-triage model {m.model_version}",
        "",
        f"Intent and sentiment classifier for {' and '.join(m.languages)} social-media "
        f"customer messages. Encoder `{m.encoder}`, trained on data `{m.data}` (MLflow run "
        f"`{m.run_id}`), package {m.package_version}, exported {m.created_at}.",
        "",
        "## How it decides",
        "",
        f"Inputs are `{m.input_prefix}` + the message, at most "
        f"{m.max_length} tokens. Outputs are calibrated probabilities (temperature "
        "scaling inside the graph). A class is decided automatically only when its probability "
        "reaches its threshold; thresholds were chosen on the calib split so that at most "
        f"{m.fpr_target:.0%} of a class's automated decisions are wrong "
        f"(margin rule {m.margin}), per language where a language had enough calib "
        "messages (its column below) and pooled for the others (`all`). Everything else goes to "
        "review; routing.json maps decisions to actions.",
        "",
    ]

    def shown(t: float | None) -> str:
        return "never automatic" if t is None else f"{t:.3f}"

    for head, spec in m.heads.items():
        tables = {"all": spec.thresholds, **spec.language_thresholds}
        lines += [f"### {head} (temperature {spec.temperature:.3f})", ""]
        lines += [
            "| label | " + " | ".join(f"threshold ({name})" for name in tables) + " |",
            "|---|" + "---|" * len(tables),
        ]
        lines += [
            f"| {label} | " + " | ".join(shown(t[label]) for t in tables.values()) + " |"
            for label in spec.labels
        ]
        lines.append("")
    test = report["bundle_test"]
    lines += [
        f"## Measured on the {report['split']} split ({report['n']} messages), this bundle",
        "",
        "| head | language | macro-F1 | ECE | coverage | worst class: wrong automated |",
        "|---|---|---|---|---|---|",
    ]
    for key in sorted(k.removesuffix("/macro_f1") for k in test if k.endswith("/macro_f1")):
        head, _, lang = key.partition("/")
        lines.append(
            f"| {head} | {lang or 'all'} | {test[f'{key}/macro_f1']:.3f} | "
            f"{test[f'{key}/ece']:.3f} | {test[f'{key}/coverage']:.3f} | "
            f"{test[f'{key}/auto_fpr_max']:.3f} |"
        )
    real = report.get("real_text") or {}
    if real:
        lines += [
            "",
            "## Measured on real text the model never trained on (`evaluate.extra`)",
            "",
            "The PyTorch checkpoint with the same calibration (`triage evaluate`); answers given "
            "with at least 0.9 / 0.7 confidence: their share and how many were right.",
            "",
            "| set | head | n | macro-F1 | accuracy | ECE | ≥ 0.9: share, right "
            "| ≥ 0.7: share, right |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for key in sorted(k.removesuffix("/macro_f1") for k in real if k.endswith("/macro_f1")):
            _, name, head = key.split("/")
            lines.append(
                f"| {name} | {head} | {real[f'{key}/n']:.0f} | {real[f'{key}/macro_f1']:.3f} | "
                f"{real[f'{key}/accuracy']:.3f} | {real[f'{key}/ece']:.3f} | "
                f"{real[f'{key}/share_at_0.9']:.2f}, {real[f'{key}/accuracy_at_0.9']:.3f} | "
                f"{real[f'{key}/share_at_0.7']:.2f}, {real[f'{key}/accuracy_at_0.7']:.3f} |"
            )
        near = [k for k in real if k.endswith("/accuracy_at_0.9_near")]
        if near:
            lines += [
                "",
                "With the far-out rule (below), the answers at ≥ 0.9 still given and how many were "
                "right: "
                + "; ".join(
                    f"{k.split('/')[1]} {k.split('/')[2]}: "
                    f"{real[k.replace('accuracy', 'share')]:.2f}, {real[k]:.3f}"
                    for k in sorted(near)
                )
                + ".",
            ]
    novelty = report.get("novelty")
    if novelty:
        lines += [
            "",
            "## Far from the training data",
            "",
            f"A message whose novelty (cosine distance to its {novelty['k']:.0f}th nearest of "
            f"{novelty['n_bank']:.0f} training messages) reaches {novelty['threshold']:.3f} "
            f"(the {novelty['quantile']:.2f} quantile of the calib split) goes to review "
            f"whatever its confidence: {novelty['far_share_bundle']:.1%} of the "
            f"{report['split']} split here.",
        ]
    lines += [
        "",
        "## Export gates",
        "",
        f"Parity of the fp32 graph with PyTorch: {fmt(report['parity'])}.",
        "",
    ]
    for name, result in report["candidates"].items():
        lines.append(
            f"- {name} ({result['backend']}): {result['bytes'] / 1e6:.0f} MB, "
            f"{'passed' if result['passed'] else 'rejected'} ({result['why']})"
        )
    lines += [
        "",
        f"Shipped: quantization {m.quantization}, vocabulary trimmed: {m.vocab_trimmed}"
        + (f" ({report['vocab_kept']:,} pieces)" if m.vocab_trimmed else "")
        + f", backend {m.backend}.",
        "",
        "## Limits",
        "",
        "Per-language numbers rest on small test sets (see the counts above); the project's "
        "authored data was written for this project and is not a sample of real inbox traffic. "
        "Audit automated decisions weekly (`triage audit`).",
        "",
    ]
    return "\n".join(lines)

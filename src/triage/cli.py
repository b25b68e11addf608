"""The `triage` command: ``triage <stage> [hydra overrides]``.

Examples::

    triage prepare                      # the embedded default (data=authored)
    triage prepare data=social          # authored + public social data
    triage backbone                     # convert/verify the offline encoder, print its folder
    triage show data=banking77          # print the composed config
    triage sweep sweep=quick            # an Optuna sweep (configs/sweep/); again to resume
"""

from __future__ import annotations

import importlib
import logging
import sys

from triage.config import load_config, to_yaml
from triage.errors import TriageError

STAGES = {
    "prepare": "triage.pipeline.prepare",
    "backbone": "triage.encoder.resolve",
    "train": "triage.pipeline.train",
    "baseline": "triage.pipeline.baseline",
    "calibrate": "triage.pipeline.calibrate",
    "evaluate": "triage.pipeline.evaluate",
    "export": "triage.pipeline.export",
    "vocab": "triage.pipeline.export.vocab:build",
    "classify": "triage.serving.classify",
    "serve": "triage.serving.api",
    "sweep": "triage.sweep.run",
    "sweep-promote": "triage.sweep.promote",
    "audit-sample": "triage.audit.sample",
    "audit-reviewer": "triage.audit.reviewers",
    "audit-serve": "triage.audit.web.app",
    "audit-report": "triage.audit.report",
    "audit-export": "triage.audit.feedback",
    "audit-issues": "triage.audit.label_issues",
    "audit-labelstudio": "triage.audit.labelstudio",
    "rollout-report": "triage.audit.rollout",
    "rollout-register": "triage.audit.registry:register",
    "rollout-promote": "triage.audit.registry:promote",
}
# stages whose bundle may be a registry URI (models:/<name>@<alias>), resolved before they start
BUNDLE_STAGES = {"serve", "classify"}
# stages that compose a config of their own per trial: they get the overrides too
RECOMPOSING = {"sweep"}
USAGE = (
    "usage: triage <stage> [key=value ...]\n"
    f"stages: {', '.join(STAGES)}, show (print the composed config)\n"
    "overrides are Hydra's: data=social data.seed=3 model.encoder=/path/to/encoder"
)


def main(argv: list[str] | None = None) -> int:
    """Run one stage with Hydra overrides; return the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0 if argv else 2
    stage, overrides = argv[0], argv[1:]
    if stage not in STAGES and stage != "show":
        print(f"triage: unknown stage {stage!r}\n{USAGE}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S"
    )
    try:
        cfg = load_config(overrides)
        if stage == "show":
            print(to_yaml(cfg))
            return 0
        bundles = (cfg.serve.bundle, cfg.serve.shadow_bundle, cfg.classify.bundle)
        if stage in BUNDLE_STAGES and any(str(b).startswith("models:/") for b in bundles):
            from triage.audit.registry import resolve_bundles

            cfg = resolve_bundles(cfg)
        module_name, _, function = STAGES[stage].partition(":")
        run = getattr(importlib.import_module(module_name), function or "run")
        if stage in RECOMPOSING:
            run(cfg, overrides)
        else:
            run(cfg)
    except TriageError as exc:
        # errors a user causes say what to do; a traceback would only bury that. Anything
        # else is a bug and shows its traceback.
        print(f"triage {stage}: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

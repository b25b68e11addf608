#!/usr/bin/env bash
# The MASSIVE nl/en benchmark through the ordinary stages (issue 20). One run at a time: on a
# 2-core CPU nothing else CPU-heavy may run beside it. Every model goes to models/massive/<run>/
# and its numbers to MLflow (experiment social-triage) and models/massive/<run>/evaluation/.
#
#   bash benchmarks/massive.sh joint       # nl+en training: per-language accuracy, parity
#   bash benchmarks/massive.sh baseline    # TF-IDF + logistic regression on the same data
#   bash benchmarks/massive.sh en_to_nl    # English only: Dutch zero-shot
#   bash benchmarks/massive.sh nl_to_en    # Dutch only: English zero-shot
#   bash benchmarks/massive.sh curve 32    # English + 32 Dutch utterances per intent
#   bash benchmarks/massive.sh run joint_ls0 massive train.label_smoothing=0  # any variant
#
# Needs the public data (paths.public_data, ../shared/data by default).
set -euo pipefail
cd "$(dirname "$0")/.."
TRIAGE=${TRIAGE:-.venv/bin/triage}
EPOCHS=${EPOCHS:-5}

# run NAME DATA [overrides...]: prepare, train, calibrate, evaluate into models/massive/NAME
run() {
  local name=$1 data=$2
  shift 2
  local out=models/massive/$name
  local common=(data="$data" "data.out_dir=data/processed/massive/$name" "$@")
  $TRIAGE prepare "${common[@]}"
  $TRIAGE train "${common[@]}" "train.out_dir=$out/checkpoint" "train.epochs=$EPOCHS" \
    train.patience=2 "tracking.run_name=massive-$name"
  $TRIAGE calibrate "${common[@]}" "calibrate.checkpoint=$out/checkpoint" \
    "calibrate.out_file=$out/calibration.json"
  $TRIAGE evaluate "${common[@]}" "evaluate.checkpoint=$out/checkpoint" \
    "evaluate.calibration=$out/calibration.json" "evaluate.out_dir=$out/evaluation" \
    evaluate.compare_with=null
}

case "${1:-}" in
  joint)
    run joint massive
    $TRIAGE export data=massive data.out_dir=data/processed/massive/joint \
      export.checkpoint=models/massive/joint/checkpoint \
      export.calibration=models/massive/joint/calibration.json \
      export.out_dir=models/massive/joint/onnx export.report=models/massive/joint/export.json
    ;;
  baseline)
    common=(data=massive data.out_dir=data/processed/massive/joint)
    $TRIAGE prepare "${common[@]}"
    $TRIAGE baseline "${common[@]}" baseline.out_dir=models/massive/baseline/checkpoint
    $TRIAGE calibrate "${common[@]}" calibrate.checkpoint=models/massive/baseline/checkpoint \
      calibrate.out_file=models/massive/baseline/calibration.json
    $TRIAGE evaluate "${common[@]}" evaluate.checkpoint=models/massive/baseline/checkpoint \
      evaluate.calibration=models/massive/baseline/calibration.json \
      evaluate.out_dir=models/massive/baseline/evaluation evaluate.compare_with=null
    ;;
  en_to_nl) run en_to_nl massive_en ;;
  nl_to_en) run nl_to_en massive_nl ;;
  curve)
    per_intent=${2:?give the Dutch utterances per intent, e.g. 32}
    run "curve_nl$per_intent" massive "data.sources.massive.options.train_per_intent.nl=$per_intent"
    ;;
  run)
    shift
    [ $# -ge 2 ] || { sed -n '2,13p' "$0"; exit 2; }
    run "$@"
    ;;
  *)
    sed -n '2,13p' "$0"
    exit 2
    ;;
esac

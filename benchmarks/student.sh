#!/usr/bin/env bash
# A compact student (issue 18) through the ordinary stages on the authored data: train (directly
# or distilled from the 12-layer default, models/checkpoint), calibrate, evaluate on the authored
# test split and the real-text development sets (evaluate.extra). One run at a time: on a 2-core
# CPU nothing else CPU-heavy may run beside it. The model goes to models/student/<name>/, its
# numbers to MLflow (run name student-<name>) and models/student/<name>/evaluation/metrics.json.
#
#   bash benchmarks/student.sh NAME [overrides...]
#   bash benchmarks/student.sh l6_distill model=e5_small_l6 train=distill
#   bash benchmarks/student.sh l6_direct model=e5_small_l6
#   EXPORT=1 bash benchmarks/student.sh l6_distill model=e5_small_l6 train=distill  # + bundle
#
# Distillation needs the teacher (`make run` first) and the public data (MASSIVE's texts).
# Compare with `python benchmarks/sentiment_table.py student-<name> ... default=<run id>`.
set -euo pipefail
cd "$(dirname "$0")/.."
TRIAGE=${TRIAGE:-.venv/bin/triage}
if [ $# -lt 1 ]; then
  sed -n '2,14p' "$0"
  exit 2
fi
name=$1
shift
out=models/student/$name
common=("$@")
$TRIAGE prepare "${common[@]}"
$TRIAGE train "${common[@]}" "train.out_dir=$out/checkpoint" "tracking.run_name=student-$name"
$TRIAGE calibrate "${common[@]}" "calibrate.checkpoint=$out/checkpoint" \
  "calibrate.out_file=$out/calibration.json"
$TRIAGE evaluate "${common[@]}" "evaluate.checkpoint=$out/checkpoint" \
  "evaluate.calibration=$out/calibration.json" "evaluate.out_dir=$out/evaluation" \
  "evaluate.extra=[absa_nl,tweeteval_sentiment_val]" evaluate.compare_with=null
if [ "${EXPORT:-0}" = 1 ]; then
  $TRIAGE export "${common[@]}" "export.checkpoint=$out/checkpoint" \
    "export.calibration=$out/calibration.json" "export.out_dir=$out/onnx" \
    "export.report=$out/export.json"
fi

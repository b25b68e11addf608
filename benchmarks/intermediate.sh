#!/usr/bin/env bash
# Does intermediate training on MASSIVE nl+en help the inbox model? (issue 20, item 5) The
# default authored fine-tuning, per seed, started either from the pretrained encoder (`default`)
# or from the encoder of the MASSIVE joint model (`massive`: train.init_encoder, new heads),
# then calibrated and evaluated on the same authored test split and the real-text sets. One run
# at a time: on a 2-core CPU nothing else CPU-heavy may run beside it. Each model goes to
# models/intermediate/<start>_s<seed>/, its numbers to MLflow (run intermediate-<start>-s<seed>).
#
#   bash benchmarks/intermediate.sh default 14
#   bash benchmarks/intermediate.sh massive 13
#   .venv/bin/python benchmarks/intermediate_table.py   # the runs and their seed means
#
# `massive` needs the MASSIVE joint model first (bash benchmarks/massive.sh joint).
set -euo pipefail
cd "$(dirname "$0")/.."
TRIAGE=${TRIAGE:-.venv/bin/triage}
if [ $# -ne 2 ]; then
  sed -n '2,13p' "$0"
  exit 2
fi
start=$1 seed=$2
case "$start" in
  default) init=() ;;
  massive) init=(train.init_encoder=models/massive/joint/checkpoint) ;;
  *) sed -n '2,13p' "$0"; exit 2 ;;
esac
out=models/intermediate/${start}_s$seed
$TRIAGE prepare
$TRIAGE train "${init[@]}" "train.seed=$seed" "train.out_dir=$out/checkpoint" \
  "tracking.run_name=intermediate-$start-s$seed"
$TRIAGE calibrate "calibrate.checkpoint=$out/checkpoint" "calibrate.out_file=$out/calibration.json"
$TRIAGE evaluate "evaluate.checkpoint=$out/checkpoint" "evaluate.calibration=$out/calibration.json" \
  "evaluate.out_dir=$out/evaluation" "evaluate.extra=[absa_nl,tweeteval_sentiment_val]" \
  evaluate.compare_with=null

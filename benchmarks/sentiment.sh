#!/usr/bin/env bash
# Sentiment on real text (issue 16): train a config through the ordinary stages and score it on
# the authored test split and on the real-text development sets (evaluate.extra). One run at a
# time: on a 2-core CPU nothing else CPU-heavy may run beside it. Every model goes to
# models/sentiment/<name>/, its numbers to MLflow (run name sentiment-<name>) and
# models/sentiment/<name>/evaluation/metrics.json.
#
#   bash benchmarks/sentiment.sh NAME DATA [overrides...]
#   bash benchmarks/sentiment.sh authored_s13 authored train.seed=13
#   bash benchmarks/sentiment.sh xed_s13 authored_xed train.seed=13
#
# Needs the public data (paths.public_data, ../shared/data by default). Summarise with
# `python benchmarks/sentiment_table.py models/sentiment/*/evaluation/metrics.json`.
set -euo pipefail
cd "$(dirname "$0")/.."
TRIAGE=${TRIAGE:-.venv/bin/triage}
if [ $# -lt 2 ]; then
  sed -n '2,13p' "$0"
  exit 2
fi
name=$1 data=$2
shift 2
out=models/sentiment/$name
common=(data="$data" "$@")
$TRIAGE prepare "${common[@]}"
$TRIAGE train "${common[@]}" "train.out_dir=$out/checkpoint" "tracking.run_name=sentiment-$name"
$TRIAGE calibrate "${common[@]}" "calibrate.checkpoint=$out/checkpoint" \
  "calibrate.out_file=$out/calibration.json"
$TRIAGE evaluate "${common[@]}" "evaluate.checkpoint=$out/checkpoint" \
  "evaluate.calibration=$out/calibration.json" "evaluate.out_dir=$out/evaluation" \
  "evaluate.extra=[absa_nl,tweeteval_sentiment_val]" evaluate.compare_with=null

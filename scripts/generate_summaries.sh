#!/usr/bin/env bash
# Summarize the held-out NLPCC2017 articles with a trained model and score them (ROUGE-1/2/L, perplexity).
# usage: scripts/generate_summaries.sh ADAPTER_DIR [TRAIN_FILE] [--flag value ...]
#   ADAPTER_DIR  a trained model: OUTPUT/adapter or OUTPUT/best_model of scripts/run_nlpcc2017_gpt2.sh; the base
#                model, tokenizer and max_length it was trained with are reused.
#   TRAIN_FILE   the same train_with_summ.txt (or the TRAIN_FILE environment variable): its held-out part
#                (the last 10%, unshuffled) is summarized.
#   Defaults are the tutorial's decoding (5 beams, no_repeat_ngram_size 2, 50 new tokens); further flags go to
#   'python -m ms_ptuning.summarization', e.g. --num_beams 1 (greedy), --max_generate_samples 100, --backend eager
#   (default auto: GPT-2 generates on the graph backend's static cache; an adapter loads on either backend).
#   OUTPUT_DIR (environment) defaults to ADAPTER_DIR/../generated; DRY_RUN=1 prints the command only.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

if [ $# -eq 0 ] || [ "${1:-}" = "-h" ] || [ "${1:-}" = "--help" ]; then
  sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'
  [ $# -eq 0 ] && exit 2 || exit 0
fi
ADAPTER_DIR="$1"
shift
[ -f "$ADAPTER_DIR/adapter_config.json" ] || { echo "generate_summaries: '$ADAPTER_DIR' has no adapter_config.json" >&2; exit 2; }
if [ $# -gt 0 ] && [ "${1#--}" = "$1" ]; then TRAIN_FILE="$1"; shift; fi
[ -n "${TRAIN_FILE:-}" ] || { echo "generate_summaries: TRAIN_FILE is not set (second argument or environment)" >&2; exit 2; }
[ -f "$TRAIN_FILE" ] || { echo "generate_summaries: TRAIN_FILE '$TRAIN_FILE' is not a file" >&2; exit 2; }

command=("$ROOT/.venv/bin/python" -m ms_ptuning.summarization
  --adapter_dir "$ADAPTER_DIR" --train_file "$TRAIN_FILE"
  --output_dir "${OUTPUT_DIR:-$(dirname "$ADAPTER_DIR")/generated}"
  --num_beams 5 --no_repeat_ngram_size 2 --max_new_tokens 50 --per_device_eval_batch_size 4 --backend auto "$@")

run_or_print "${command[@]}"

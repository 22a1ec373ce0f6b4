#!/usr/bin/env bash
# GPT-2 summarization on NLPCC2017 (train + eval + ROUGE) with the MindNLP tutorial's hyperparameters:
# lr 1.5e-4, 2000 warmup steps, max_grad_norm 1.0, batch size 4, max length 1024, GPT-2 small from scratch
# (vocabulary 21128, bert-base-chinese WordPiece), generation with 5 beams, no_repeat_ngram_size 2, 50 new tokens.
# usage: scripts/run_nlpcc2017_gpt2.sh [TRAIN_FILE] [--flag value ...]
#   TRAIN_FILE  local train_with_summ.txt (or the TRAIN_FILE environment variable); without it the file is
#               downloaded from the tutorial's URL, which needs network.
#   MODEL_DIR   (environment) a local pretrained GPT-2 directory instead of the from-scratch config.
#   Further flags go to 'python -m ms_ptuning.summarization' after these defaults, so they override them,
#   e.g. --mode prefix --pre_seq_len 10, --max_samples 2000, --max_length 512, --device_target GPU,
#   --backend eager (default auto: GPT-2 trains compiled on the native Cells and generates on a static cache).
#   OUTPUT_DIR (environment) defaults to outputs/run_nlpcc2017_gpt2; DRY_RUN=1 prints the command only.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

if [ "${1:-}" = "-h" ] || [ "${1:-}" = "--help" ]; then
  sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'
  exit 0
fi
if [ $# -gt 0 ] && [ "${1#--}" = "$1" ]; then TRAIN_FILE="$1"; shift; fi
if [ -n "${TRAIN_FILE:-}" ] && [ ! -f "$TRAIN_FILE" ]; then
  echo "run_nlpcc2017_gpt2: TRAIN_FILE '$TRAIN_FILE' is not a file" >&2
  exit 2
fi

command=("$ROOT/.venv/bin/python" -m ms_ptuning.summarization
  --output_dir "${OUTPUT_DIR:-$ROOT/outputs/run_nlpcc2017_gpt2}"
  --mode finetune --learning_rate 1.5e-4 --warmup_steps 2000 --max_grad_norm 1.0
  --per_device_train_batch_size 4 --per_device_eval_batch_size 4 --num_train_epochs 1 --max_length 1024
  --num_beams 5 --no_repeat_ngram_size 2 --max_new_tokens 50 --logging_steps 100 --seed 42 --backend auto)
[ -n "${TRAIN_FILE:-}" ] && command+=(--train_file "$TRAIN_FILE")
[ -n "${MODEL_DIR:-}" ] && command+=(--model_name_or_path "$MODEL_DIR")
command+=("$@")

run_or_print "${command[@]}"

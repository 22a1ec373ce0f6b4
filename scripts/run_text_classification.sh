#!/usr/bin/env bash
# Your own labelled texts: P-tuning v2 (prefix) text classification through ms_ptuning.run.
# usage: scripts/run_text_classification.sh MODEL_DIR TRAIN_FILE VALIDATION_FILE [--flag value ...]
#   MODEL_DIR        local model directory (config.json, *.safetensors, tokenizer files)
#   TRAIN_FILE       csv, tsv, json, jsonl or a save_to_disk directory with a text column and a label column
#   VALIDATION_FILE  the same columns; every label must occur in TRAIN_FILE
#   Further flags go to 'python -m ms_ptuning.run' after the defaults below, so they override them, e.g.
#   --text_column_names premise,hypothesis --label_column_name verdict --mode prompt --test_file F.
#   TASK=token_classification runs token classification instead (jsonl tokens/tags or CoNLL files).
#   OUTPUT_DIR (environment) defaults to outputs/<TRAIN_FILE's name>; DRY_RUN=1 prints the command only.
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

USAGE="usage: scripts/run_text_classification.sh MODEL_DIR TRAIN_FILE VALIDATION_FILE [--flag value ...]"
[ $# -ge 3 ] || die "$USAGE"
MODEL_DIR="$1" TRAIN_FILE="$2" VALIDATION_FILE="$3"
shift 3
[ -d "$MODEL_DIR" ] || die "MODEL_DIR '$MODEL_DIR' is not a directory"
[ -e "$TRAIN_FILE" ] || die "TRAIN_FILE '$TRAIN_FILE' not found"
[ -e "$VALIDATION_FILE" ] || die "VALIDATION_FILE '$VALIDATION_FILE' not found"
name="$(basename "$TRAIN_FILE")"
run_or_print "$ROOT/.venv/bin/python" -m ms_ptuning.run --task "${TASK:-text_classification}" \
  --model_name_or_path "$MODEL_DIR" --train_file "$TRAIN_FILE" --validation_file "$VALIDATION_FILE" \
  --output_dir "${OUTPUT_DIR:-$ROOT/outputs/${name%.*}}" --mode prefix --pre_seq_len 16 --learning_rate 1e-2 \
  --num_train_epochs 10 --per_device_train_batch_size 16 --max_seq_length 128 "$@"

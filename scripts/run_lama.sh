#!/usr/bin/env bash
# P-tuning v1 knowledge probing (THUDM/P-tuning LAMA): one run per relation of DATA_DIR, as the reference
# trains one relation at a time, then the manual-vs-P-tuning table over all relations.
# DATA_DIR: relations.jsonl and <relation>/{train,dev,test}.jsonl (or fact-retrieval/original/<relation>/).
# Predictions are ranked over a vocabulary shared by the models compared, as the reference's default
# (vocab_strategy=shared): VOCAB_FILE (default DATA_DIR/29k-vocab.json, the reference's file: a JSON object
# {model name: [tokens]}; pick the list with --vocab_key when the model directory is not named after one)
# and/or SHARED_MODEL_DIRS (space-separated model directories whose tokenizers must also hold each word).
# usage: scripts/run_lama.sh [MODEL_DIR [DATA_DIR]] [ms_ptuning.lama.train flags, e.g. --template "(3,3,3)"]
#   MODEL_DIR: local bert-base-cased / gpt2-style directory (config.json, *.safetensors, tokenizer files).
#   OUTPUT_DIR (environment) defaults to outputs/run_lama; DRY_RUN=1 prints the commands only.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="$ROOT/.venv/bin/python"

die() {
  echo "run_lama: $*" >&2
  exit 2
}

if [ $# -gt 0 ] && [ "${1#--}" = "$1" ]; then MODEL_DIR="$1"; shift; fi
if [ $# -gt 0 ] && [ "${1#--}" = "$1" ]; then DATA_DIR="$1"; shift; fi
[ -n "${MODEL_DIR:-}" ] || die "MODEL_DIR is not set (first argument or environment variable)"
[ -n "${DATA_DIR:-}" ] || die "DATA_DIR is not set (second argument or environment variable)"
[ -d "$MODEL_DIR" ] || die "MODEL_DIR '$MODEL_DIR' is not a directory"
[ -f "$DATA_DIR/relations.jsonl" ] || die "DATA_DIR '$DATA_DIR' has no relations.jsonl"
OUTPUT_DIR="${OUTPUT_DIR:-$ROOT/outputs/run_lama}"
VOCAB_FILE="${VOCAB_FILE:-}"
[ -n "$VOCAB_FILE" ] || [ ! -f "$DATA_DIR/29k-vocab.json" ] || VOCAB_FILE="$DATA_DIR/29k-vocab.json"
VOCABULARY=()
if [ -n "$VOCAB_FILE" ]; then
  [ -f "$VOCAB_FILE" ] || die "VOCAB_FILE '$VOCAB_FILE' is not a file"
  VOCABULARY+=(--vocab_file "$VOCAB_FILE")
fi
for shared in ${SHARED_MODEL_DIRS:-}; do
  [ -d "$shared" ] || die "SHARED_MODEL_DIRS: '$shared' is not a directory"
  VOCABULARY+=(--shared_model_dir "$shared")
done
[ ${#VOCABULARY[@]} -gt 0 ] || die "no shared vocabulary: put the reference's 29k-vocab.json in DATA_DIR, or set \
VOCAB_FILE or SHARED_MODEL_DIRS (the reference ranks predictions over the vocabulary its models share)"

[ -n "${DRY_RUN:-}" ] || bash "$ROOT/scripts/setup_env.sh"
mapfile -t RELATIONS < <("$PYTHON" -c \
  'import sys; from ms_ptuning.lama.data import list_relations; print("\n".join(list_relations(sys.argv[1])))' \
  "$DATA_DIR")
[ ${#RELATIONS[@]} -gt 0 ] && [ -n "${RELATIONS[0]}" ] || die "no relation of $DATA_DIR/relations.jsonl has facts"

for relation in "${RELATIONS[@]}"; do
  command=("$PYTHON" -m ms_ptuning.lama.train --model_dir "$MODEL_DIR" --data_dir "$DATA_DIR"
    --relation "$relation" --output_dir "$OUTPUT_DIR" "${VOCABULARY[@]}" "$@")
  if [ -n "${DRY_RUN:-}" ]; then
    printf '%q ' "${command[@]}"
    echo
    continue
  fi
  mkdir -p "$OUTPUT_DIR"
  echo "run_lama: relation $relation → $OUTPUT_DIR/$relation.json"
  "${command[@]}" 2>&1 | tee "$OUTPUT_DIR/$relation.log"
done
[ -n "${DRY_RUN:-}" ] || "$PYTHON" -m ms_ptuning.lama.train --summarize "$OUTPUT_DIR" | tee "$OUTPUT_DIR/summary.md"

#!/usr/bin/env bash
# Grid search over learning rate × pre_seq_len × epochs (as THUDM/P-tuning-v2 search_script/), then one
# table of every run's best dev metric: SEARCH_DIR/results.md and results.tsv, best first.
#
# usage: scripts/hparam_search.sh TASK [MODEL_DIR [DATA_DIR]] [--flag value ...]
#   MODEL_DIR, DATA_DIR   as for the run scripts (arguments or environment variables)
#   --flags               passed to every run (e.g. --per_device_train_batch_size 16 --seed 11)
# environment (defaults: the reference's COPA search grid):
#   LRS="5e-3 7e-3 1e-2"  PRE_SEQ_LENS="4 8 16 32 64 128"  EPOCHS="20 40 60 80 100 120"
#   SEARCH_DIR=outputs/search/TASK  METRIC=<name> (default: each run's metric_for_best_model)
# Runs whose results.json exists are not repeated and an interrupted run resumes from its last checkpoint,
# so a stopped search continues where it was; a failed run is listed as failed (its log is
# SEARCH_DIR/<run>/train.log) and the search goes on.
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

USAGE="usage: scripts/hparam_search.sh TASK [MODEL_DIR [DATA_DIR]] [--flag value ...]"
[ $# -ge 1 ] && [ "${1#--}" = "$1" ] || die "$USAGE"
TASK="$1"
shift
if [ $# -gt 0 ] && [ "${1#--}" = "$1" ]; then MODEL_DIR="$1"; shift; fi
if [ $# -gt 0 ] && [ "${1#--}" = "$1" ]; then DATA_DIR="$1"; shift; fi
[ -d "${MODEL_DIR:-}" ] || die "MODEL_DIR '${MODEL_DIR:-}' is not a directory (second argument or environment variable)"
[ -d "${DATA_DIR:-}" ] || die "DATA_DIR '${DATA_DIR:-}' is not a directory (third argument or environment variable)"
SEARCH_DIR="${SEARCH_DIR:-$ROOT/outputs/search/$TASK}"
mkdir -p "$SEARCH_DIR"

bash "$ROOT/scripts/setup_env.sh"
for lr in ${LRS:-5e-3 7e-3 1e-2}; do
  for psl in ${PRE_SEQ_LENS:-4 8 16 32 64 128}; do
    for epochs in ${EPOCHS:-20 40 60 80 100 120}; do
      run_dir="$SEARCH_DIR/lr${lr}_psl${psl}_ep${epochs}"
      if [ -f "$run_dir/results.json" ]; then
        echo "hparam_search: $run_dir done already"
        continue
      fi
      mkdir -p "$run_dir"
      echo "hparam_search: lr $lr, pre_seq_len $psl, epochs $epochs → $run_dir"
      "$ROOT/.venv/bin/python" -m ms_ptuning.run \
        --task "$TASK" --model_name_or_path "$MODEL_DIR" --data_dir "$DATA_DIR" --output_dir "$run_dir" \
        --mode prefix "$@" --learning_rate "$lr" --pre_seq_len "$psl" --num_train_epochs "$epochs" \
        --resume True --overwrite_output_dir True \
        >> "$run_dir/train.log" 2>&1 || echo "hparam_search: run failed, see $run_dir/train.log" >&2
    done
  done
done
"$ROOT/.venv/bin/python" "$ROOT/scripts/lib/results_table.py" "$SEARCH_DIR" ${METRIC:+"$METRIC"}

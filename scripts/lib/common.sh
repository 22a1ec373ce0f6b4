# Shared by scripts/run_*.sh: argument checks, environment setup, and the ms_ptuning.run call.
#
# A run script sets the reference's hyperparameters and calls `run_task TASK "$@"`:
#   TASK=rte HPARAMS=(--per_device_train_batch_size 32 ...) REFERENCE_MODEL=roberta-large
# and, where THUDM's fine-tuning path differs, FINETUNE_HPARAMS=(...), added when the run's --mode is finetune.
# Usage of every run script:
#   scripts/run_X.sh [MODEL_DIR [DATA_DIR]] [more ms_ptuning.run flags, which override the defaults]
# MODEL_DIR / DATA_DIR may also come from the environment; OUTPUT_DIR defaults to outputs/<script name>;
# DRY_RUN=1 prints the ms_ptuning.run command instead of running it.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
SCRIPT_NAME="$(basename "$0" .sh)"

die() {
  echo "$SCRIPT_NAME: $*" >&2
  exit 2
}

usage() {
  cat >&2 <<USAGE
usage: scripts/$SCRIPT_NAME.sh [MODEL_DIR [DATA_DIR]] [--flag value ...]
  MODEL_DIR  local model directory (config.json, *.safetensors, tokenizer files); the reference used
             $REFERENCE_MODEL. Or set the MODEL_DIR environment variable.
  DATA_DIR   local directory with the $TASK files. Or set the DATA_DIR environment variable.
  Further flags go to 'python -m ms_ptuning.run' after the reference's ones, so they override them.
  OUTPUT_DIR (environment) defaults to outputs/$SCRIPT_NAME; DRY_RUN=1 prints the command only.
USAGE
}

run_task() {
  TASK="$1"
  shift
  if [ "${1:-}" = "-h" ] || [ "${1:-}" = "--help" ]; then
    usage
    exit 0
  fi
  if [ $# -gt 0 ] && [ "${1#--}" = "$1" ]; then MODEL_DIR="$1"; shift; fi
  if [ $# -gt 0 ] && [ "${1#--}" = "$1" ]; then DATA_DIR="$1"; shift; fi
  [ -n "${MODEL_DIR:-}" ] || { usage; die "MODEL_DIR is not set (first argument or environment variable)"; }
  [ -n "${DATA_DIR:-}" ] || { usage; die "DATA_DIR is not set (second argument or environment variable)"; }
  [ -d "$MODEL_DIR" ] || die "MODEL_DIR '$MODEL_DIR' is not a directory"
  [ -d "$DATA_DIR" ] || die "DATA_DIR '$DATA_DIR' is not a directory"
  local output_dir="${OUTPUT_DIR:-$ROOT/outputs/$SCRIPT_NAME}"
  local finetune=()
  if [ "$(last_mode prefix "${HPARAMS[@]}" "$@")" = finetune ] && [ -n "${FINETUNE_HPARAMS+set}" ]; then
    finetune=("${FINETUNE_HPARAMS[@]}")
  fi
  local command=("$ROOT/.venv/bin/python" -m ms_ptuning.run
    --task "$TASK" --model_name_or_path "$MODEL_DIR" --data_dir "$DATA_DIR" --output_dir "$output_dir"
    --mode prefix "${HPARAMS[@]}" ${finetune[@]+"${finetune[@]}"} "$@")
  [ -n "${DRY_RUN:-}" ] || echo "$SCRIPT_NAME: task $TASK, model $MODEL_DIR (reference: $REFERENCE_MODEL), data $DATA_DIR → $output_dir"
  run_or_print "${command[@]}"
}

# The --mode a run will use: the last one among the flags (argparse keeps the last), else the first argument.
last_mode() {
  local mode="$1"
  shift
  while [ $# -gt 0 ]; do
    case "$1" in
      --mode) mode="${2:-}"; shift ;;
      --mode=*) mode="${1#--mode=}" ;;
    esac
    shift
  done
  echo "$mode"
}

# Run a command after setting up .venv, or with DRY_RUN=1 only print it.
run_or_print() {
  if [ -n "${DRY_RUN:-}" ]; then
    printf '%q ' "$@"
    echo
    exit 0
  fi
  bash "$ROOT/scripts/setup_env.sh"
  exec "$@"
}

#!/usr/bin/env bash
# Data-parallel training with MindSpore's msrun: N workers on this machine, each holding the whole model
# and computing its shard of every global batch (per_device_train_batch_size × N examples); gradients are
# all-reduced, only rank 0 writes to --output_dir.
# usage: scripts/run_distributed.sh NUM_WORKERS [ms_ptuning.run flags ...]
#        ENTRY=ms_ptuning.chat scripts/run_distributed.sh NUM_WORKERS [ms_ptuning.chat flags ...] (prompt/response)
#   e.g. scripts/run_distributed.sh 2 --task rte --model_name_or_path DIR --data_dir DIR --output_dir out/rte
# Environment: MASTER_PORT (default 8118), MSRUN_LOG_DIR (per-worker logs; default <output_dir>/msrun_logs or
# outputs/msrun_logs), DRY_RUN=1 prints the command. Several machines: set WORKER_NUM (all workers),
# MASTER_ADDR (the scheduler's host) and NODE_RANK on each, NUM_WORKERS being this machine's share.
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

[ $# -ge 1 ] && [[ "$1" =~ ^[1-9][0-9]*$ ]] || die "usage: scripts/run_distributed.sh NUM_WORKERS [ms_ptuning.run flags ...]"
case "${ENTRY:-ms_ptuning.run}" in ms_ptuning.run | ms_ptuning.chat) ;; *) die "ENTRY must be ms_ptuning.run or ms_ptuning.chat, not '$ENTRY'" ;; esac
local_workers="$1"
shift
output_dir=""
for ((i = 1; i < $#; i++)); do
  [ "${!i}" = "--output_dir" ] && { next=$((i + 1)); output_dir="${!next}"; }
done
log_dir="${MSRUN_LOG_DIR:-${output_dir:-$ROOT/outputs}/msrun_logs}"
# msrun starts "python" from PATH, which must be this project's environment
export PATH="$ROOT/.venv/bin:$PATH" PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
command=("$ROOT/.venv/bin/msrun" --worker_num "${WORKER_NUM:-$local_workers}" --local_worker_num "$local_workers"
  --master_addr "${MASTER_ADDR:-127.0.0.1}" --master_port "${MASTER_PORT:-8118}" --node_rank "${NODE_RANK:--1}"
  --log_dir "$log_dir" --join True --cluster_time_out 300
  python -m "${ENTRY:-ms_ptuning.run}" "$@")
[ -n "${DRY_RUN:-}" ] || echo "$SCRIPT_NAME: $local_workers workers, logs in $log_dir"
run_or_print "${command[@]}"

#!/usr/bin/env bash
# wic / roberta-large: hyperparameters of THUDM/P-tuning-v2 run_script/run_wic_roberta.sh.
# DATA_DIR holds SuperGLUE WiC: train.jsonl val.jsonl [test.jsonl].
# usage: scripts/run_wic_roberta.sh [MODEL_DIR [DATA_DIR]] [--flag value ...]   (or MODEL_DIR=... DATA_DIR=...)
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

REFERENCE_MODEL=roberta-large
HPARAMS=(
  --per_device_train_batch_size 32 --learning_rate 1e-2 --pre_seq_len 8 --num_train_epochs 50
  --hidden_dropout_prob 0.1 --seed 11 --max_seq_length 128
)
run_task wic "$@"

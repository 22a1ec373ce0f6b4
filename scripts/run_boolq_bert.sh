#!/usr/bin/env bash
# boolq / bert-large-cased: hyperparameters of THUDM/P-tuning-v2 run_script/run_boolq_bert.sh.
# DATA_DIR holds SuperGLUE BoolQ: train.jsonl val.jsonl [test.jsonl].
# usage: scripts/run_boolq_bert.sh [MODEL_DIR [DATA_DIR]] [--flag value ...]   (or MODEL_DIR=... DATA_DIR=...)
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

REFERENCE_MODEL=bert-large-cased
HPARAMS=(
  --per_device_train_batch_size 32 --learning_rate 5e-3 --pre_seq_len 40 --num_train_epochs 100
  --hidden_dropout_prob 0.1 --seed 11 --max_seq_length 128
)
run_task boolq "$@"

#!/usr/bin/env bash
# copa / bert-large-cased: hyperparameters of THUDM/P-tuning-v2 run_script/run_copa_bert.sh.
# DATA_DIR holds SuperGLUE COPA: train.jsonl val.jsonl [test.jsonl].
# usage: scripts/run_copa_bert.sh [MODEL_DIR [DATA_DIR]] [--flag value ...]   (or MODEL_DIR=... DATA_DIR=...)
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

REFERENCE_MODEL=bert-large-cased
HPARAMS=(
  --per_device_train_batch_size 16 --learning_rate 1e-2 --pre_seq_len 16 --num_train_epochs 80
  --hidden_dropout_prob 0.1 --seed 44 --max_seq_length 128
)
# THUDM's fine-tuning path (neither --prefix nor --prompt) trains the head only here (its fix_bert): with
# --mode finetune the backbone stays frozen; add --freeze_backbone False to fine-tune every weight.
FINETUNE_HPARAMS=(--freeze_backbone True)
run_task copa "$@"

#!/usr/bin/env bash
# squad / roberta-large: hyperparameters of THUDM/P-tuning-v2 run_script/run_squad_roberta.sh.
# DATA_DIR holds SQuAD v1.1: train-v1.1.json dev-v1.1.json.
# usage: scripts/run_squad_roberta.sh [MODEL_DIR [DATA_DIR]] [--flag value ...]   (or MODEL_DIR=... DATA_DIR=...)
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

REFERENCE_MODEL=roberta-large
HPARAMS=(
  --per_device_train_batch_size 8 --learning_rate 5e-3 --pre_seq_len 16 --num_train_epochs 30
  --hidden_dropout_prob 0.2 --seed 11 --max_seq_length 384 --lr_decay_per_epoch 0.95
)
# THUDM's fine-tuning path (neither --prefix nor --prompt) trains the head only here (its fix_bert): with
# --mode finetune the backbone stays frozen; add --freeze_backbone False to fine-tune every weight.
FINETUNE_HPARAMS=(--freeze_backbone True)
run_task squad "$@"

#!/usr/bin/env bash
# ontonotes / roberta-large: hyperparameters of THUDM/P-tuning-v2 run_script/run_ontonotes_roberta.sh.
# DATA_DIR holds OntoNotes 5.0: train.sd.conllx dev.sd.conllx test.sd.conllx.
# usage: scripts/run_ontonotes_roberta.sh [MODEL_DIR [DATA_DIR]] [--flag value ...]   (or MODEL_DIR=... DATA_DIR=...)
# The reference passes --max_seq_length 128, which its NER code ignores (inputs are cut only at
# the model's maximum): not passed here either. The test split (test) is scored at every new best dev F1.
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

REFERENCE_MODEL=roberta-large
HPARAMS=(
  --per_device_train_batch_size 16 --learning_rate 7e-3 --pre_seq_len 48 --num_train_epochs 60
  --hidden_dropout_prob 0.1 --seed 14 --lr_decay_per_epoch 0.95
  --eval_splits test
)
# THUDM's fine-tuning path (neither --prefix nor --prompt) trains the head only here (its fix_bert): with
# --mode finetune the backbone stays frozen; add --freeze_backbone False to fine-tune every weight.
FINETUNE_HPARAMS=(--freeze_backbone True)
run_task ontonotes "$@"

#!/usr/bin/env bash
# conll2012 / roberta-large: hyperparameters of THUDM/P-tuning-v2 run_script/run_conll12_roberta.sh.
# DATA_DIR holds CoNLL-2012 SRL: conll2012.train.txt conll2012.devel.txt conll2012.test.txt.
# usage: scripts/run_conll12_roberta.sh [MODEL_DIR [DATA_DIR]] [--flag value ...]   (or MODEL_DIR=... DATA_DIR=...)
# The reference passes --max_seq_length 128, which its SRL code ignores (inputs are cut only at
# the model's maximum): not passed here either. The test split (test) is scored at every new best dev F1.
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

REFERENCE_MODEL=roberta-large
HPARAMS=(
  --per_device_train_batch_size 32 --learning_rate 5e-3 --pre_seq_len 64 --num_train_epochs 45
  --hidden_dropout_prob 0.1 --seed 11 --lr_decay_per_epoch 0.95
  --eval_splits test
)
run_task conll2012 "$@"

#!/usr/bin/env bash
# conll2005 / roberta-large: hyperparameters of THUDM/P-tuning-v2 run_script/run_conll05_roberta.sh.
# DATA_DIR holds CoNLL-2005 SRL: conll05.train.txt conll05.devel.txt conll05.test.wsj.txt conll05.test.brown.txt.
# usage: scripts/run_conll05_roberta.sh [MODEL_DIR [DATA_DIR]] [--flag value ...]   (or MODEL_DIR=... DATA_DIR=...)
# The reference passes --max_seq_length 128, which its SRL code ignores (inputs are cut only at
# the model's maximum): not passed here either. The test splits (test_wsj,test_brown) are scored at every
# new best dev F1.
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

REFERENCE_MODEL=roberta-large
HPARAMS=(
  --per_device_train_batch_size 16 --learning_rate 6e-3 --pre_seq_len 224 --num_train_epochs 15
  --hidden_dropout_prob 0.1 --seed 11 --lr_decay_per_epoch 0.95
  --eval_splits test_wsj,test_brown
)
run_task conll2005 "$@"

#!/usr/bin/env bash
# Prompt/response P-tuning v2 of a causal LM (Llama, Qwen2, GPT-2) with THUDM's ChatGLM-6B ptuning/train.sh
# defaults: prefix of 128 virtual tokens, lr 2e-2, batch 1 x 16 accumulation steps, 3000 steps, 64 source
# and 64 target tokens, logging every 10 and checkpoints every 1000 steps; then generation on the
# validation records (predict_with_generate) scored with ROUGE-1/2/L and BLEU-4 (python -m ms_ptuning.chat).
# usage: scripts/run_chat_ptuning.sh MODEL_DIR TRAIN_FILE DEV_FILE [--flag value ...]
#   MODEL_DIR   local causal LM directory (config.json, *.safetensors, tokenizer files)
#   TRAIN_FILE  JSON lines (or .json/.csv/.tsv) with a prompt and a response column
#   DEV_FILE    the same columns; scored after training
#   Further flags go to 'python -m ms_ptuning.chat' after the defaults, so they override them, e.g.
#   AdvertiseGen's --prompt_column content --response_column summary, --history_column history, --num_beams 4.
#   OUTPUT_DIR (environment) defaults to outputs/<TRAIN_FILE's name>_chat; DRY_RUN=1 prints the command only.
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

USAGE="usage: scripts/run_chat_ptuning.sh MODEL_DIR TRAIN_FILE DEV_FILE [--flag value ...]"
[ $# -ge 3 ] || die "$USAGE"
MODEL_DIR="$1" TRAIN_FILE="$2" DEV_FILE="$3"
shift 3
[ -d "$MODEL_DIR" ] || die "MODEL_DIR '$MODEL_DIR' is not a directory"
[ -e "$TRAIN_FILE" ] || die "TRAIN_FILE '$TRAIN_FILE' not found"
[ -e "$DEV_FILE" ] || die "DEV_FILE '$DEV_FILE' not found"
name="$(basename "$TRAIN_FILE")"
run_or_print "$ROOT/.venv/bin/python" -m ms_ptuning.chat --model_name_or_path "$MODEL_DIR" \
  --train_file "$TRAIN_FILE" --validation_file "$DEV_FILE" --output_dir "${OUTPUT_DIR:-$ROOT/outputs/${name%.*}_chat}" \
  --mode prefix --pre_seq_len 128 --learning_rate 2e-2 --per_device_train_batch_size 1 \
  --per_device_eval_batch_size 1 --gradient_accumulation_steps 16 --max_steps 3000 --max_source_length 64 \
  --max_target_length 64 --logging_steps 10 --eval_strategy no --save_strategy steps --save_steps 1000 "$@"

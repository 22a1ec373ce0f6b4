"""`python -m ms_ptuning.chat --model_name_or_path DIR --train_file T.jsonl --validation_file D.jsonl ...`

P-tuning v2 (or prompt / finetune) of a causal LM (Llama, Qwen2, GPT-2 compiled; any other causal LM mindnlp loads
eagerly, `hf_backbone.HFCausalLM`) on prompt/response records, THUDM's
ChatGLM-6B ptuning recipe: records encoded as `data.py` says (chat template or ChatGLM's plain format,
max_source_length / max_target_length), loss on the response tokens only, the project's Trainer (graph
backend for every native decoder), then responses generated for the validation records (greedy by default,
`--num_beams`) and scored with ROUGE-1/2/L and BLEU-4 as ChatGLM reports them (`metrics.py`).

Writes to `--output_dir`: what the Trainer writes (metrics.jsonl, checkpoints, adapter/), results.json
(eval loss and perplexity of the responses, rouge-1/2/l and bleu-4 as `eval_*`) and
generated_predictions.jsonl (one line per validation record: its `line` (or `row`), prompt, reference `labels`,
generated `predict`, that record's scores). `ms-ptuning predict --adapter OUTPUT/adapter` writes
generations for new prompts.
"""

import json
import os
import sys
import time
from dataclasses import asdict, dataclass, field

from ..backend import seed_everything, set_device_target
from transformers import HfArgumentParser

from ..adapters import save_adapter
from ..arguments import PTuningArguments, RunTrainingArguments
from ..backbones import input_positions, load_backbone, load_tokenizer
from ..cli import run_and_print_results
from ..device.jit import set_jit_level
from ..distributed import DataParallel
from ..execution import choose_backend
from ..generation import GenerationConfig, generate
from ..models.causal_lm import CausalLM, load_lm_head
from ..predict import place
from ..summarization import announce, perplexity_metrics, tokens_per_step
from ..training import DatasetMetrics, Trainer
from ..training.arguments import resolve_precision
from ..training.precision import default_loss_scaler, mixed_precision_dtype
from .data import ChatFormat, chat_dataset, decode_text, end_token_id, pad_token_id, read_examples
from .metrics import corpus_scores


@dataclass(kw_only=True)
class ModelArguments(PTuningArguments):
    model_name_or_path: str = field(metadata={"help": "local causal LM directory (config.json, *.safetensors, "
                                                      "tokenizer files): Llama, Qwen2, GPT-2 (graph or eager) "
                                                      "or any other causal LM (eager)"})
    tokenizer_name: str | None = field(default=None, metadata={"help": "tokenizer directory if not the model's"})
    prefix_dropout: float = field(default=0.0, metadata={"help": "dropout on the prefix (ChatGLM's: none)"})
    device_target: str = field(default="CPU", metadata={"help": "CPU | GPU | Ascend"})


@dataclass
class DataArguments:
    train_file: str = field(metadata={"help": "prompt/response records: .jsonl, .json, .csv, .tsv"})
    validation_file: str = field(metadata={"help": "records scored after training (loss, ROUGE, BLEU)"})
    prompt_column: str = field(default="prompt", metadata={"help": "AdvertiseGen: content"})
    response_column: str = field(default="response", metadata={"help": "AdvertiseGen: summary"})
    history_column: str | None = field(default=None, metadata={
        "help": "a list of [query, response] pairs of earlier rounds, put in front of the prompt"})
    max_source_length: int = field(default=64, metadata={"help": "prompt tokens kept (the first ones)"})
    max_target_length: int = field(default=64, metadata={"help": "response tokens kept, the end token included"})
    max_train_samples: int | None = field(default=None)
    max_eval_samples: int | None = field(default=None)


@dataclass
class GenerationArguments:
    num_beams: int = field(default=1, metadata={"help": "1 = greedy"})
    max_new_tokens: int | None = field(default=None, metadata={"help": "default: max_target_length"})
    generation_batch_size: int = field(default=8)


def build_model(model_args: ModelArguments, data_args: DataArguments, mixed_precision: str):
    """(CausalLM over the pretrained decoder in --model_name_or_path, the Backend it runs on)."""
    ptuning = model_args.ptuning_config(model_args.prefix_dropout)
    backbone = load_backbone(model_args.model_name_or_path, causal_lm=True)
    limit = input_positions(backbone.config)
    needed = data_args.max_source_length + data_args.max_target_length + ptuning.num_virtual_tokens
    if limit is not None and needed > limit:
        raise ValueError(f"max_source_length + max_target_length + {ptuning.num_virtual_tokens} virtual tokens = "
                         f"{needed} exceed the {limit} positions {model_args.model_name_or_path} embeds")
    backend = choose_backend(model_args.backend, backbone.config.model_type)
    model = CausalLM(backend.backbone(backbone), ptuning, mixed_precision_dtype(mixed_precision),
                     return_logits=False)
    load_lm_head(model, model_args.model_name_or_path)
    return model, backend


def generate_responses(model, tokenizer, chat_format: ChatFormat, examples, gen_args: GenerationArguments) -> list:
    config = GenerationConfig(max_new_tokens=gen_args.max_new_tokens or chat_format.max_target_length,
                              num_beams=gen_args.num_beams, eos_token_id=end_token_id(tokenizer),
                              pad_token_id=pad_token_id(tokenizer), batch_size=gen_args.generation_batch_size)
    prompts = [chat_format.source_ids(tokenizer, e.query, e.history) for e in examples]
    return [decode_text(tokenizer, ids) for ids in generate(model, prompts, config)]


def write_predictions(path: str, examples, generated, per_example) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        for example, text, scores in zip(examples, generated, per_example):
            handle.write(json.dumps({**place(example.where), "prompt": example.query, "labels": example.response,
                                     "predict": text, **scores}, ensure_ascii=False) + "\n")


def read_splits(data_args: DataArguments) -> tuple:
    """((train examples, records skipped), (validation examples, records skipped)) from the data files."""
    columns = (data_args.prompt_column, data_args.response_column, data_args.history_column)
    return (read_examples(data_args.train_file, *columns, data_args.max_train_samples),
            read_examples(data_args.validation_file, *columns, data_args.max_eval_samples))


def generate_and_score(model, tokenizer, chat_format, eval_examples, gen_args, output_dir: str) -> dict:
    """Generate every validation response, write them with their scores, return the corpus scores."""
    started = time.time()
    generated = generate_responses(model, tokenizer, chat_format, eval_examples, gen_args)
    seconds = time.time() - started
    scores, per_example = corpus_scores(generated, [e.response for e in eval_examples])
    write_predictions(os.path.join(output_dir, "generated_predictions.jsonl"), eval_examples, generated, per_example)
    return {"generation_seconds": seconds, **{f"eval_{name}": value for name, value in scores.items()}}


def run(model_args: ModelArguments, data_args: DataArguments, gen_args: GenerationArguments,
        training_args: RunTrainingArguments) -> dict:
    set_device_target(model_args.device_target)
    set_jit_level(model_args.jit_level)
    seed_everything(training_args.seed)
    resolve_precision(training_args)
    tokenizer_dir = model_args.tokenizer_name or model_args.model_name_or_path
    tokenizer = load_tokenizer(tokenizer_dir)
    chat_format = ChatFormat.for_tokenizer(tokenizer, data_args.max_source_length, data_args.max_target_length)
    (train_examples, train_skipped), (eval_examples, eval_skipped) = read_splits(data_args)
    train_dataset = chat_dataset(train_examples, tokenizer, chat_format)
    eval_dataset = chat_dataset(eval_examples, tokenizer, chat_format)
    model, backend = build_model(model_args, data_args, training_args.mixed_precision)
    # join the msrun cluster (scripts/run_distributed.sh with ENTRY=ms_ptuning.chat) only now, after mindnlp's
    # from_pretrained, as ms_ptuning.run does
    parallel = DataParallel.from_environment()
    trainable, total = announce(model, backend, train_dataset, eval_dataset,
                                f"{model.backbone.config.model_type} prompt/response tuning")
    print(f"[ms_ptuning] prompts as {'the chat template' if chat_format.use_chat_template else 'ChatGLM plain text'}"
          f"; skipped for an empty prompt or response: train {train_skipped}, validation {eval_skipped}")
    metadata = {"base_model": model_args.model_name_or_path, "tokenizer": tokenizer_dir,
                "chat_format": chat_format.to_dict(),
                "text_column_names": [c for c in (data_args.prompt_column, data_args.history_column) if c],
                "max_length": data_args.max_source_length + data_args.max_target_length}
    trainer = Trainer(model, training_args, train_dataset=train_dataset, eval_dataset=eval_dataset,
                      compute_metrics=DatasetMetrics(perplexity_metrics), adapter_metadata=metadata,
                      loss_scaler=default_loss_scaler(training_args.mixed_precision), steps=backend.steps,
                      parallel=parallel)
    train_output = trainer.train(resume_from_checkpoint=True if training_args.resume else None)
    evaluation = trainer.evaluate()  # every worker: it gathers the shards
    if not parallel.is_main:  # rank 0 alone generates and writes; the others hold the same weights
        return evaluation
    save_adapter(model, os.path.join(training_args.output_dir, "adapter"), **metadata)
    results = {"mode": model.config.mode, "backend": backend.name, "device_target": model_args.device_target,
               "jit_level": model_args.jit_level, "chat_format": chat_format.to_dict(),
               "train_examples": len(train_dataset), "eval_examples": len(eval_dataset),
               "skipped_records": {"train": train_skipped, "validation": eval_skipped},
               "trainable_parameters": trainable, "total_parameters": total, "generation": asdict(gen_args),
               **train_output.metrics, "global_step": train_output.global_step,
               "train_tokens_per_second": train_output.metrics["train_steps_per_second"]
               * tokens_per_step(train_dataset, training_args)}
    results.update(evaluation)
    results.update(generate_and_score(model, tokenizer, chat_format, eval_examples, gen_args, training_args.output_dir))
    with open(os.path.join(training_args.output_dir, "results.json"), "w") as handle:
        json.dump(results, handle, indent=2, default=str)
    return results


def parse(argv=None):
    parser = HfArgumentParser((ModelArguments, DataArguments, GenerationArguments, RunTrainingArguments))
    return parser.parse_args_into_dataclasses(args=argv)


def main(argv=None) -> int:
    return run_and_print_results("ms_ptuning.chat", run, lambda: parse(argv))

"""GPT-2 summarization on NLPCC2017: `python -m ms_ptuning.summarization --train_file FILE --output_dir DIR ...`

Trains a GPT-2 LM on `[CLS] article [SEP] summary [SEP]` (finetune, prefix or prompt mode) with the
project's Trainer, evaluates loss and perplexity every epoch, then summarizes the held-out articles and
scores them with character-level ROUGE. The backbone is a local pretrained GPT-2 directory
(`--model_name_or_path`) or, as in the MindNLP tutorial, a GPT-2 built from a config (vocabulary 21128).
With `--adapter_dir` a trained model is loaded instead and only the generation/evaluation runs.
`--backend auto` (the default) runs GPT-2 on the graph backend: the native GPT-2, training and evaluation
through the compiled step engine, generation on the static cache (`ms_ptuning.static_decoding`);
`--backend eager` runs the mindnlp model op by op. An adapter saved on one backend loads on the other.

Writes to `--output_dir`: metrics.jsonl, curves.png, checkpoints, best_model/, adapter/ (the Trainer's),
results.json (data counts, eval loss/perplexity, ROUGE-1/2/L) and samples.jsonl (article / reference /
generated per held-out example).
"""

import json
import math
import os
import sys
import time
from dataclasses import asdict, dataclass, field

import numpy as np

import transformers
from transformers import HfArgumentParser

from .adapters import load_adapter, read_adapter_config, save_adapter
from .interop.init_from import init_from
from .arguments import PTuningArguments, RunTrainingArguments
from .backbones import build_backbone, load_backbone
from .backend import seed_everything, set_device_target
from .cli import run_and_print_results
from .device.jit import set_jit_level
from .config import PTuningConfig
from .execution import Backend, choose_backend
from .data.nlpcc2017 import (NLPCC2017_URL, LoadReport, decode_summary, generation_prompts, iter_records,
                             lm_dataset, load_tokenizer, read_records, resolve_data_file, split_examples,
                             tokenize_records)
from .generation import GenerationConfig, generate
from .models.causal_lm import CausalLM
from .rouge import corpus_rouge, rouge_scores
from .training import DatasetMetrics, Trainer
from .training.arguments import resolve_precision
from .training.precision import default_loss_scaler, mixed_precision_dtype
from .weights import count_parameters, named_weights, trainable_weights


DEFAULT_MAX_LENGTH = 512


@dataclass(kw_only=True)
class ModelArguments(PTuningArguments):
    model_name_or_path: str | None = field(default=None, metadata={
        "help": "local pretrained GPT-2 directory; default: a GPT-2 built from the config below (from scratch)"})
    tokenizer_name: str | None = field(default=None, metadata={
        "help": "tokenizer directory; default: the adapter's, else bert-base-chinese's vocabulary shipped in cn_clip"})
    adapter_dir: str | None = field(default=None, metadata={
        "help": "load trained weights (adapter.safetensors + adapter_config.json, e.g. OUTPUT/adapter) and only "
                "evaluate and generate; the base model, tokenizer and max_length it was trained with are reused"})
    init_from: str | None = field(default=None, metadata={
        "help": "start training from an adapter's weights: an ms_ptuning adapter or a peft CAUSAL_LM adapter directory "
                "(it must fit --mode and --pre_seq_len; peft's needs its base model as --model_name_or_path)"})
    mode: str = field(default="finetune", metadata={"help": "finetune | prefix (P-tuning v2) | prompt (P-tuning)"})
    pre_seq_len: int = field(default=10, metadata={"help": "prefix / prompt length"})
    dropout: float = field(default=0.1, metadata={"help": "GPT-2 residual/embedding/attention and prefix dropout"})
    n_layer: int = field(default=12, metadata={"help": "from-scratch config (the tutorial's: GPT-2 small)"})
    n_embd: int = field(default=768)
    n_head: int = field(default=12)
    n_positions: int = field(default=1024)
    device_target: str = field(default="CPU", metadata={"help": "CPU | GPU | Ascend"})


@dataclass
class DataArguments:
    train_file: str | None = field(default=None, metadata={
        "help": "local train_with_summ.txt; default: download --data_url into --download_dir (needs network)"})
    data_url: str = field(default=NLPCC2017_URL)
    download_dir: str = field(default="data")
    max_samples: int | None = field(default=None, metadata={"help": "use only the first N valid records"})
    train_fraction: float = field(default=0.9, metadata={"help": "unshuffled split: first part trains, rest evaluates"})
    max_length: int | None = field(default=None, metadata={
        "help": f"tokens per [CLS] article [SEP] summary [SEP]; default: the adapter's, else {DEFAULT_MAX_LENGTH} "
                "(tutorial: 1024)"})
    summary_only_loss: bool | None = field(default=None, metadata={
        "help": "mask the article tokens out of the loss; default: the adapter's, else False"})
    strict: bool = field(default=False, metadata={"help": "stop at the first malformed line instead of skipping it"})


@dataclass
class GenerationArguments:
    num_beams: int = field(default=5, metadata={"help": "1 = greedy (the tutorial uses 5)"})
    no_repeat_ngram_size: int = field(default=2, metadata={
        "help": "no n-gram twice in article + summary, as HF generate; 0 = off"})
    max_new_tokens: int = field(default=50)
    min_new_tokens: int = field(default=1, metadata={"help": "[SEP] is not accepted before this many tokens"})
    length_penalty: float = field(default=1.0)
    generation_batch_size: int = field(default=8)
    max_generate_samples: int | None = field(default=None, metadata={
        "help": "summarize only the first N eval articles"})
    rouge_before_training: bool = field(default=False, metadata={"help": "also score the untrained model"})


def load_data(data_args: DataArguments, tokenizer, max_length: int):
    """(train examples, eval examples, load report, data file)."""
    path = resolve_data_file(data_args.train_file, data_args.data_url, data_args.download_dir)
    report = LoadReport(path)
    examples = tokenize_records(iter_records(path, report, data_args.strict, data_args.max_samples),
                                tokenizer, max_length)
    print(f"[ms_ptuning] {report}")
    train, evaluation = split_examples(examples, data_args.train_fraction)
    return train, evaluation, report, path


def gpt2_config(model_args: ModelArguments, tokenizer) -> "transformers.GPT2Config":
    return transformers.GPT2Config(vocab_size=len(tokenizer), n_positions=model_args.n_positions,
                                   n_embd=model_args.n_embd, n_layer=model_args.n_layer, n_head=model_args.n_head,
                                   resid_pdrop=model_args.dropout, embd_pdrop=model_args.dropout,
                                   attn_pdrop=model_args.dropout, bos_token_id=tokenizer.cls_token_id,
                                   eos_token_id=tokenizer.sep_token_id, pad_token_id=tokenizer.pad_token_id)


def build_model(model_args: ModelArguments, tokenizer, max_length: int, saved: dict = None,
                mixed_precision: str = "no") -> tuple[CausalLM, Backend]:
    """(a new model, or from `saved` (the adapter's config) a trained one, checked against the tokenizer and
    max_length; the Backend it runs on, `--backend`). `mixed_precision` (--mixed_precision) is refused before
    anything loads if the device lacks it."""
    if model_args.adapter_dir and model_args.init_from:
        raise ValueError("--init_from starts a training run from an adapter, --adapter_dir evaluates a trained one "
                         "without training: pass one of them")
    compute_dtype = mixed_precision_dtype(mixed_precision)
    saved = saved or {}
    ptuning = (PTuningConfig.from_dict(saved["ptuning_config"]) if saved else
               model_args.ptuning_config(model_args.dropout))
    base = model_args.model_name_or_path or saved.get("base_model")
    if saved and not base and ptuning.mode != "finetune":
        raise ValueError(f"{model_args.adapter_dir} holds a {ptuning.mode} adapter over a from-scratch backbone, "
                         "whose frozen weights were never saved; pass the pretrained --model_name_or_path it was "
                         "trained on (or train in finetune mode, which saves every weight)")
    if base:
        dropout = {name: model_args.dropout for name in ("resid_pdrop", "embd_pdrop", "attn_pdrop")}
        backbone = load_backbone(base, **dropout)
    elif saved:
        backbone = build_backbone(transformers.GPT2Config.from_dict(saved["backbone_config"]))
    else:
        backbone = build_backbone(gpt2_config(model_args, tokenizer))
    config = backbone.config
    if config.model_type != "gpt2":
        raise ValueError(f"summarization needs a GPT-2 backbone, {base} is {config.model_type!r}")
    if config.vocab_size < len(tokenizer):
        raise ValueError(f"the tokenizer has {len(tokenizer)} tokens but the model only {config.vocab_size}")
    if max_length + ptuning.num_virtual_tokens > config.n_positions:
        raise ValueError(f"max_length {max_length} + {ptuning.num_virtual_tokens} virtual tokens exceed the "
                         f"model's n_positions {config.n_positions}")
    backend = choose_backend(model_args.backend, config.model_type)
    model = CausalLM(backend.backbone(backbone), ptuning, compute_dtype, return_logits=False)
    if saved:
        load_adapter(model, model_args.adapter_dir)
    elif model_args.init_from:
        init_from(model, model_args.init_from, model_args.model_name_or_path)
    return model, backend


def perplexity_metrics(predictions, dataset) -> dict:
    """Token-level NLL and perplexity from the model's per-example (summed NLL, token count)."""
    nll, count = predictions
    token_nll = float(np.sum(nll) / max(float(np.sum(count)), 1.0))
    return {"token_nll": token_nll, "perplexity": math.exp(min(token_nll, 700.0))}


def tokens_per_step(dataset, args) -> float:
    """Real (unpadded) tokens per optimizer step, averaged over an epoch. Times the Trainer's steps per second
    this is a throughput that includes the per-epoch evaluations inside `train_runtime`."""
    batches = math.ceil(len(dataset) / args.per_device_train_batch_size)
    return float(dataset.columns["attention_mask"].sum()) / math.ceil(batches / args.gradient_accumulation_steps)


def summarize(model, tokenizer, examples, gen_args: GenerationArguments, max_length: int) -> list:
    """Generated summary texts, one per example; prompts leave room for max_new_tokens within max_length."""
    prompts = generation_prompts(examples, tokenizer, max_length - gen_args.max_new_tokens)
    config = GenerationConfig(max_new_tokens=gen_args.max_new_tokens, min_new_tokens=gen_args.min_new_tokens,
                              num_beams=gen_args.num_beams,
                              no_repeat_ngram_size=gen_args.no_repeat_ngram_size,
                              eos_token_id=tokenizer.sep_token_id, pad_token_id=tokenizer.pad_token_id,
                              length_penalty=gen_args.length_penalty, batch_size=gen_args.generation_batch_size)
    return [decode_summary(tokenizer, ids) for ids in generate(model, prompts, config)]


def write_samples(path: str, data_file: str, examples, generated) -> None:
    articles = read_records(data_file, [e.line for e in examples])
    with open(path, "w", encoding="utf-8") as handle:
        for example, summary in zip(examples, generated):
            handle.write(json.dumps({"line": example.line, "article": articles[example.line].article,
                                     "reference": example.summary, "generated": summary,
                                     **rouge_scores(summary, example.summary)}, ensure_ascii=False) + "\n")


def announce(model, backend: Backend, train_dataset, eval_dataset, task: str = "GPT-2 summarization") -> tuple:
    """Print the backend (one line) and what trains; return (trainable, total) parameter counts."""
    trainable, total = count_parameters(trainable_weights(model)), count_parameters(named_weights(model))
    print(f"{backend.describe()}; generation {'compiled on a fixed-size cache' if backend.is_graph else 'op by op'}")
    print(f"[ms_ptuning] {task}, {model.config.mode}: trainable parameters {trainable:,} of {total:,}; "
          f"train {len(train_dataset)}, eval {len(eval_dataset)} examples")
    return trainable, total


def run(model_args: ModelArguments, data_args: DataArguments, gen_args: GenerationArguments,
        training_args: RunTrainingArguments) -> dict:
    set_device_target(model_args.device_target)
    set_jit_level(model_args.jit_level)
    seed_everything(training_args.seed)
    resolve_precision(training_args)
    saved = read_adapter_config(model_args.adapter_dir) if model_args.adapter_dir else {}
    tokenizer_name = model_args.tokenizer_name or saved.get("tokenizer")
    max_length = data_args.max_length or saved.get("max_length") or DEFAULT_MAX_LENGTH
    summary_only = data_args.summary_only_loss if data_args.summary_only_loss is not None else \
        saved.get("summary_only_loss", False)
    tokenizer = load_tokenizer(tokenizer_name)
    train_examples, eval_examples, report, data_file = load_data(data_args, tokenizer, max_length)
    train_dataset = lm_dataset(train_examples, tokenizer, max_length, summary_only)
    eval_dataset = lm_dataset(eval_examples, tokenizer, max_length, summary_only)
    model, backend = build_model(model_args, tokenizer, max_length, saved, training_args.mixed_precision)
    trainable, total = announce(model, backend, train_dataset, eval_dataset)
    to_summarize = eval_examples[:gen_args.max_generate_samples]
    references = [e.summary for e in to_summarize]
    results = {"mode": model.config.mode, "data_file": data_file, "kept_records": report.kept,
               "skipped_lines": report.skipped, "first_skipped_lines": report.skipped_lines,
               "train_examples": len(train_dataset), "eval_examples": len(eval_dataset),
               "trainable_parameters": trainable, "total_parameters": total,
               "generation": asdict(gen_args), "max_length": max_length, "backend": backend.name,
               "device_target": model_args.device_target, "jit_level": model_args.jit_level}
    if gen_args.rouge_before_training:
        results["before_training"] = corpus_rouge(summarize(model, tokenizer, to_summarize, gen_args, max_length),
                                                  references)
    metadata = {"base_model": model_args.model_name_or_path or saved.get("base_model"), "tokenizer": tokenizer_name,
                "max_length": max_length, "summary_only_loss": summary_only}
    trainer = Trainer(model, training_args, train_dataset=train_dataset, eval_dataset=eval_dataset,
                      compute_metrics=DatasetMetrics(perplexity_metrics), adapter_metadata=metadata,
                      loss_scaler=default_loss_scaler(training_args.mixed_precision), steps=backend.steps)
    if not model_args.adapter_dir:
        train_output = trainer.train(resume_from_checkpoint=True if training_args.resume else None)
        save_adapter(model, os.path.join(training_args.output_dir, "adapter"), **metadata)
        results.update(train_output.metrics, global_step=train_output.global_step,
                       best_metric=trainer.state.best_metric, best_step=trainer.state.best_global_step,
                       train_tokens_per_second=train_output.metrics["train_steps_per_second"]
                       * tokens_per_step(train_dataset, training_args))
    os.makedirs(training_args.output_dir, exist_ok=True)
    results.update(trainer.evaluate())
    started = time.time()
    generated = summarize(model, tokenizer, to_summarize, gen_args, max_length)
    results["generation_seconds"] = time.time() - started
    results.update(corpus_rouge(generated, references))
    write_samples(os.path.join(training_args.output_dir, "samples.jsonl"), data_file, to_summarize, generated)
    with open(os.path.join(training_args.output_dir, "results.json"), "w") as handle:
        json.dump(results, handle, indent=2, default=str)
    return results


def parse(argv=None):
    parser = HfArgumentParser((ModelArguments, DataArguments, GenerationArguments, RunTrainingArguments))
    return parser.parse_args_into_dataclasses(args=argv)


def main(argv=None) -> int:
    return run_and_print_results("ms_ptuning.summarization", run, lambda: parse(argv))


if __name__ == "__main__":
    sys.exit(main())

"""P-tuning one LAMA relation at a time, as THUDM/P-tuning does, and the summary table across relations.

    python -m ms_ptuning.lama.train --model_dir DIR --data_dir DIR --relation P19 --output_dir OUT [--backend graph]
    python -m ms_ptuning.lama.train --summarize OUT

The prompt encoder trains through the project's `Trainer`, on either backend (`--backend auto|graph|eager`:
the native BERT / GPT-2 with the whole step compiled, or the mindnlp model op by op), with the reference's
recipe as options of it:
- `optim="adam_l2"`: torch.optim.Adam, the weight decay (5e-4) added to the gradient as L2 (not AdamW's
  decoupled decay), lr 1e-5, no clipping;
- `lr_decay_per_epoch=0.98`: torch's ExponentialLR stepped after every epoch;
- batch 8 with the last partial batch dropped, at most 100 epochs;
- `eval_on_start`: dev P@1 of the untrained prompts (epoch 0) is logged but never chosen; dev P@1 after
  every epoch; `ties_are_improvements`: the best epoch is the last at the best dev P@1 (the reference's >=),
  and the test split is scored at each new best (`test_datasets`), so P-tuning's test P@1 is the best epoch's;
- `EarlyStoppingCallback` (patience 20): stop after 20 epochs without reaching the best again;
- a checkpoint after every epoch in `OUT/<relation>/`, so `--resume` continues a killed run exactly.
P@1 and P@10 are ranked over the shared vocabulary (`--vocab_file`, the reference's 29k-vocab.json, and/or
`--shared_model_dir`) on the test facts that survive it. The manual-template baseline is scored on the same
test facts by the same model and code (its queries have no pseudo tokens, so the prompt encoder plays no
part). Every split is padded to one width, so a compiled backend builds one train and one eval graph.

Differences from the reference loop: it evaluates before each of its 100 epochs, so its last epoch is never
evaluated (here every trained epoch is); its data order comes from torch's shuffle, here from (seed, epoch).
"""

import argparse
import json
import os
import sys
from dataclasses import asdict, dataclass

import numpy as np

from ..backend import seed_everything, set_device_target
from ..arguments import PTuningArguments, RunTrainingArguments
from ..backbones import load_backbone, load_tokenizer
from ..cli import report_user_errors
from ..device.jit import DEFAULT_JIT_LEVEL, JIT_LEVEL_HELP, set_jit_level
from ..config import PTuningConfig
from ..execution import BACKEND_HELP, choose_backend
from ..models.lama_probe import LamaProbe
from ..models.pretraining_heads import load_pretrained_heads
from ..safe_loading import load_safetensors
from ..training import EarlyStoppingCallback, Trainer
from ..training.optim import L2_WEIGHT_DECAY
from .data import (SPLITS, DropReport, VocabFilter, encode_facts, load_relations, load_split, pad_to_width, padding_id,
                   read_vocab_file)
from .metrics import RankMetrics
from .templates import MASKED, QueryBuilder, effective_template, model_kind, parse_template

MODEL = "model"  # the probed model's name in the vocabulary filter
MANUAL = "manual"  # the dataset of the test facts in the manual template


@dataclass
class LamaArgs:
    template: str = "(3,3,3)"
    lr: float = 1e-5
    weight_decay: float = 5e-4
    decay_rate: float = 0.98
    batch_size: int = 8
    eval_batch_size: int = 64
    max_epochs: int = 100
    early_stop: int = 20
    seed: int = 34
    prompt_encoder_type: str = "lstm"
    backend: str = "auto"


@dataclass(frozen=True)
class RunDir:
    """Where one relation's Trainer run lives (`OUT/<relation>/`: metrics.jsonl, checkpoints, best_model/) and
    what to do with a run already there: continue it (`resume`) or replace it (`overwrite`); else refused."""

    path: str
    resume: bool = False
    overwrite: bool = False


def probe_config(args: LamaArgs, kind: str) -> PTuningConfig:
    """Prompt mode with one prompt-encoder row per pseudo token of the (model-kind) template."""
    num_pseudo = sum(effective_template(parse_template(args.template), kind))
    tuning = PTuningArguments(mode="prompt", pre_seq_len=num_pseudo, prompt_encoder_type=args.prompt_encoder_type)
    return tuning.ptuning_config(dropout=0.0)  # the probe has no classifier; its LM keeps its own dropout


def load_probe(model_dir: str, args: LamaArgs) -> tuple:
    """(LamaProbe, Backend): a pretrained LM from a local directory (config.json, *.safetensors), on the
    backend `args.backend` picks, wrapped as a P-tuning probe; BERT's MLM head (`cls.predictions.*`) comes
    from the same checkpoint."""
    loaded = load_backbone(model_dir)
    backend = choose_backend(args.backend, loaded.config.model_type)
    seed_everything(args.seed)  # dropout sites and the prompt encoder's initialisation
    model = LamaProbe(backend.backbone(loaded), probe_config(args, model_kind(loaded.config.model_type)))
    if model.kind == MASKED:
        load_pretrained_heads(model, read_head_tensors(model_dir), source=model_dir)
    return model, backend


def read_head_tensors(model_dir: str) -> dict:
    """The `cls.*` tensors (numpy) of every *.safetensors file in `model_dir`."""
    tensors = {}
    for name in sorted(os.listdir(model_dir)):
        if name.endswith(".safetensors"):
            arrays = load_safetensors(os.path.join(model_dir, name))
            tensors.update({key: value for key, value in arrays.items() if key.startswith("cls.")})
    return tensors


def training_arguments(args: LamaArgs, run_dir: RunDir, num_train: int) -> RunTrainingArguments:
    """The reference's recipe as TrainingArguments (see the module docstring)."""
    if args.max_epochs < 1:
        raise ValueError(f"max_epochs must be >= 1 (epoch 0 is the untrained encoder), got {args.max_epochs}")
    return RunTrainingArguments(
        output_dir=run_dir.path, overwrite_output_dir=run_dir.overwrite, optim=L2_WEIGHT_DECAY, learning_rate=args.lr,
        weight_decay=args.weight_decay, max_grad_norm=0.0, lr_decay_per_epoch=args.decay_rate,
        per_device_train_batch_size=args.batch_size, per_device_eval_batch_size=args.eval_batch_size,
        dataloader_drop_last=num_train >= args.batch_size, num_train_epochs=args.max_epochs, seed=args.seed,
        eval_strategy="epoch", eval_on_start=True, metric_for_best_model="P@1", greater_is_better=True,
        ties_are_improvements=True, load_best_model_at_end=True, save_strategy="epoch", save_total_limit=1,
        restore_callback_states_from_checkpoint=True, logging_strategy="epoch", disable_tqdm=True)


def encode_splits(kept: dict, tokenizer, kind: str, manual_template: str, template: str) -> dict:
    """The P-tuning queries of every split and the manual-template queries of the test facts (MANUAL),
    all padded to one width."""
    ptuning = QueryBuilder(tokenizer, kind, template=template)
    datasets = {split: encode_facts(kept[split], ptuning, tokenizer) for split in SPLITS}
    datasets[MANUAL] = encode_facts(kept["test"], QueryBuilder(tokenizer, kind, manual=manual_template), tokenizer)
    width = max(dataset.columns["input_ids"].shape[1] for dataset in datasets.values())
    return {name: pad_to_width(dataset, width, padding_id(tokenizer)) for name, dataset in datasets.items()}


def train_prompts(model, steps, datasets: dict, candidates: np.ndarray, args: LamaArgs, run_dir: RunDir,
                  callbacks=()) -> tuple:
    """The manual baseline on the test facts, then the prompts trained with early stopping on dev P@1;
    (manual test metrics, training summary with the best epoch's test metrics). `steps`: the backend's
    step engine; `callbacks`: more Trainer callbacks."""
    metrics = RankMetrics(candidates)
    trainer = Trainer(model, training_arguments(args, run_dir, len(datasets["train"])),
                      train_dataset=datasets["train"], eval_dataset=datasets["dev"], compute_metrics=metrics,
                      preprocess_logits_for_metrics=metrics.ranks, test_datasets={"test": datasets["test"]},
                      callbacks=[EarlyStoppingCallback(args.early_stop), *callbacks], steps=steps)
    manual = unprefixed(trainer.predict(datasets[MANUAL], metric_key_prefix=MANUAL).metrics, MANUAL)
    trainer.train(resume_from_checkpoint=True if run_dir.resume else None)
    best = trainer.best_evaluation
    untrained = next(record["eval_P@1"] for record in trainer.state.log_history
                     if record["step"] == 0 and "eval_P@1" in record)
    return manual, {"ptuning": unprefixed(best["test_metrics"]["test"], "test"), "best_epoch": round(best["epoch"]),
                    "best_dev_P@1": best["value"], "epoch0_dev_P@1": untrained,
                    "epochs_run": round(trainer.state.epoch)}


def unprefixed(metrics: dict, prefix: str) -> dict:
    """{"<prefix>_P@k": value} → {"P@k": value}: the precision metrics alone."""
    return {name[len(prefix) + 1:]: value for name, value in metrics.items() if name.startswith(f"{prefix}_P@")}


def probe_relation(model, tokenizer, vocab_filter: VocabFilter, relation: str, manual_template: str,
                   facts: dict, args: LamaArgs, run_dir: RunDir, steps=None, callbacks=(), log=print) -> dict:
    """Manual-template baseline and P-tuning on one relation. `facts`: {split: [Fact]} for train/dev/test.
    Returns the relation's row: fact counts with drop reasons, manual and P-tuning P@1/P@10 on test."""
    kept, reports = {}, {}
    for split in SPLITS:
        kept[split], reports[split] = vocab_filter.filter(facts[split])
        log(f"{relation} {split}: {reports[split].summary()}")
    candidates = vocab_filter.candidate_ids(MODEL)
    num_pseudo = QueryBuilder(tokenizer, model.kind, template=args.template).num_pseudo_tokens
    if num_pseudo != model.config.pre_seq_len:
        raise ValueError(f"template {args.template} has {num_pseudo} pseudo tokens for a {model.kind} "
                         f"LM but the probe's prompt encoder has {model.config.pre_seq_len} rows")
    datasets = encode_splits(kept, tokenizer, model.kind, manual_template, args.template)
    manual, training = train_prompts(model, steps, datasets, candidates, args, run_dir, callbacks)
    log(f"{relation} manual template: test {manual}")
    log(f"{relation} P-tuning {args.template}: test {training['ptuning']} (best dev epoch {training['best_epoch']})")
    all_splits = DropReport()
    for split in SPLITS:
        all_splits.add(reports[split])
    return {"relation": relation, "template": args.template, "num_candidates": int(len(candidates)),
            "facts": {split: reports[split].to_dict() for split in SPLITS}, "facts_all": all_splits.to_dict(),
            "manual": manual, **training, "args": asdict(args)}


def summary_table(results: list) -> str:
    """Markdown table, one row per relation and the mean over relations."""
    header = ["relation", "test facts kept/total", "dropped", "manual P@1", "P-tuning P@1", "manual P@10",
              "P-tuning P@10"]
    columns = [(method, metric) for metric in ("P@1", "P@10") for method in ("manual", "ptuning")]
    rows = []
    for result in results:
        test = result["facts"]["test"]
        dropped = sum(result["facts_all"]["dropped"].values())
        rows.append([result["relation"], f"{test['kept']}/{test['total']}", str(dropped),
                     *(f"{result[method][metric]:.3f}" for method, metric in columns)])
    means = [np.mean([result[method][metric] for result in results]) for method, metric in columns]
    rows.append(["mean", "", "", *(f"{value:.3f}" for value in means)])
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def parse_args(argv=None):
    defaults = LamaArgs()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model_dir", help="local model directory: config.json, *.safetensors, tokenizer files")
    parser.add_argument("--data_dir", help="relations.jsonl and <relation>/{train,dev,test}.jsonl")
    parser.add_argument("--relation", help="relation id, e.g. P19")
    parser.add_argument("--output_dir", help="where <relation>.json results are written")
    parser.add_argument("--shared_model_dir", action="append", default=[],
                        help="another model whose vocabulary objects must also be single tokens in (repeatable)")
    parser.add_argument("--vocab_file", help="the shared vocabulary: the reference's 29k-vocab.json ({model name: "
                        "[tokens]}) or a JSON list of words; candidates and objects are restricted to it")
    parser.add_argument("--vocab_key", help="which list of --vocab_file is this model's (default: the one named "
                        "like --model_dir, else gpt2-xl for GPT-2 as the reference)")
    parser.add_argument("--summarize", metavar="OUTPUT_DIR", help="print the table of the results in OUTPUT_DIR")
    parser.add_argument("--resume", action="store_true", help="continue the relation's run in OUTPUT_DIR/<relation>/ "
                        "from its latest checkpoint (refused if its settings differ)")
    parser.add_argument("--overwrite_output_dir", action="store_true",
                        help="replace a run already in OUTPUT_DIR/<relation>/")
    parser.add_argument("--device_target", default="CPU", help="CPU | GPU | Ascend")
    parser.add_argument("--jit_level", default=DEFAULT_JIT_LEVEL, help=JIT_LEVEL_HELP)
    for name, value in asdict(defaults).items():
        parser.add_argument(f"--{name}", type=type(value), default=value,
                            help=BACKEND_HELP if name == "backend" else None)
    args = parser.parse_args(argv)
    if not args.summarize:
        missing = [name for name in ("model_dir", "data_dir", "relation", "output_dir") if not getattr(args, name)]
        if missing:
            parser.error(f"missing {', '.join('--' + name for name in missing)}")
    return args


def load_results(output_dir: str) -> list:
    names = sorted(name for name in os.listdir(output_dir) if name.endswith(".json"))
    if not names:
        raise FileNotFoundError(f"no <relation>.json results in {output_dir}")
    results = []
    for name in names:
        with open(os.path.join(output_dir, name)) as handle:
            results.append(json.load(handle))
    return results


def main(argv=None) -> int:
    return report_user_errors("ms_ptuning.lama.train", probe_and_report, parse_args(argv))


def probe_and_report(args) -> int:
    """Train and score one relation as `args` say; write OUTPUT_DIR/RELATION.json and print the table
    (`--summarize DIR`: only the table of the runs already in DIR)."""
    if args.summarize:
        print(summary_table(load_results(args.summarize)))
        return 0
    set_device_target(args.device_target)
    set_jit_level(args.jit_level)
    lama_args = LamaArgs(**{name: getattr(args, name) for name in asdict(LamaArgs())})
    relations = load_relations(os.path.join(args.data_dir, "relations.jsonl"))
    if args.relation not in relations:
        raise ValueError(f"relation {args.relation!r} is not in {args.data_dir}/relations.jsonl")
    tokenizer = load_tokenizer(args.model_dir)
    tokenizers = {MODEL: tokenizer}
    tokenizers.update({os.path.basename(os.path.normpath(d)): load_tokenizer(d) for d in args.shared_model_dir})
    facts = {split: load_split(args.data_dir, args.relation, split) for split in SPLITS}
    model, backend = load_probe(args.model_dir, lama_args)
    print(backend.describe())
    allowed, key = None, None
    if args.vocab_file:
        allowed, key = read_vocab_file(args.vocab_file, tokenizer, args.model_dir, model.backbone.config.model_type,
                                       args.vocab_key)
    run_dir = RunDir(os.path.join(args.output_dir, args.relation), args.resume, args.overwrite_output_dir)
    result = probe_relation(model, tokenizer, VocabFilter(tokenizers, allowed), args.relation,
                            relations[args.relation], facts, lama_args, run_dir, backend.steps)
    result["vocabulary"] = {"vocab_file": args.vocab_file, "vocab_key": key, "shared_model_dirs": args.shared_model_dir}
    result.update(backend=backend.name, device_target=args.device_target, jit_level=args.jit_level)
    os.makedirs(args.output_dir, exist_ok=True)
    with open(os.path.join(args.output_dir, f"{args.relation}.json"), "w") as handle:
        json.dump(result, handle, indent=1)
    print(summary_table([result]))
    return 0


if __name__ == "__main__":
    sys.exit(main())

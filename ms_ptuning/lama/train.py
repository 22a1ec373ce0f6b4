"""P-tuning one LAMA relation at a time, as THUDM/P-tuning does, and the summary table across relations.

    python -m ms_ptuning.lama.train --model_dir DIR --data_dir DIR --relation P19 --output_dir OUT
    python -m ms_ptuning.lama.train --summarize OUT

Training follows the reference: Adam (torch.optim.Adam: weight decay as an L2 term on the gradient, not
AdamW's decoupled decay) at lr 1e-5, weight decay 5e-4, the learning rate multiplied by 0.98 after every
epoch, batch 8 (last partial batch dropped), dev P@1 before training (epoch 0, logged, never chosen) and
after every epoch, the best trained epoch kept (ties go to the later epoch), early stop after 20 epochs
without improvement. P@1 and P@10 are ranked over the shared vocabulary (`--vocab_file`, the reference's
29k-vocab.json, and/or `--shared_model_dir`) on the test facts that survive it, with the best epoch's
prompts. The project `Trainer` is not used: its optimizer is AdamW (decoupled decay) and it has no early
stopping; its AdamW serves here with zero decoupled decay plus the L2 term, which is exactly Adam. The
manual-template baseline is scored on the same test facts by the same model and code (its queries have no
pseudo tokens, so the prompt encoder plays no part).
"""

import argparse
import json
import os
import sys
from dataclasses import asdict, dataclass

import mindspore
import numpy as np
from mindspore import ops

from ..backend import seed_everything, seed_step, torch
from ..arguments import PTuningArguments
from ..backbones import load_backbone, load_tokenizer
from ..config import PTuningConfig
from ..data.dataset import batch_indices, epoch_order
from ..encoders.folding import fold_encoders
from ..models.lama_probe import LamaProbe
from ..models.pretraining_heads import load_pretrained_heads
from ..safe_loading import load_safetensors
from ..training.optim import AdamW
from ..weights import assign_weights, to_numpy, trainable_weights
from .data import SPLITS, DropReport, VocabFilter, encode_facts, load_relations, load_split, read_vocab_file
from .metrics import precision_at_k
from .templates import MASKED, QueryBuilder, effective_template, model_kind, parse_template

MODEL = "model"  # the probed model's name in the vocabulary filter


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


def probe_config(args: LamaArgs, kind: str) -> PTuningConfig:
    """Prompt mode with one prompt-encoder row per pseudo token of the (model-kind) template."""
    num_pseudo = sum(effective_template(parse_template(args.template), kind))
    tuning = PTuningArguments(mode="prompt", pre_seq_len=num_pseudo, prompt_encoder_type=args.prompt_encoder_type)
    return tuning.ptuning_config(dropout=0.0)  # the probe has no classifier; its LM keeps its own dropout


def load_probe(model_dir: str, args: LamaArgs) -> LamaProbe:
    """A pretrained LM from a local directory (config.json, *.safetensors) wrapped as a P-tuning probe;
    BERT's MLM head (`cls.predictions.*`) comes from the same checkpoint."""
    backbone = load_backbone(model_dir)
    seed_everything(args.seed)  # the prompt encoder's initialisation
    model = LamaProbe(backbone, probe_config(args, model_kind(backbone.config.model_type)))
    if model.kind == MASKED:
        load_pretrained_heads(model, read_head_tensors(model_dir), source=model_dir)
    return model


def read_head_tensors(model_dir: str) -> dict:
    """The `cls.*` tensors (numpy) of every *.safetensors file in `model_dir`."""
    tensors = {}
    for name in sorted(os.listdir(model_dir)):
        if name.endswith(".safetensors"):
            arrays = load_safetensors(os.path.join(model_dir, name))
            tensors.update({key: value for key, value in arrays.items() if key.startswith("cls.")})
    return tensors


def to_inputs(batch: dict) -> dict:
    return {name: torch.tensor(values) for name, values in batch.items()}


def predict_logits(model, dataset, batch_size: int) -> np.ndarray:
    """Eval-mode logits (N, V) at the answer position, in dataset order. The prompt encoder is folded
    meanwhile: its output is computed once instead of once per batch."""
    model.set_train(False)
    fold_encoders(model)
    try:
        outputs = [model(**to_inputs(dataset.batch(indices)))[1].asnumpy()
                   for indices in batch_indices(np.arange(len(dataset)), batch_size)]
    finally:
        fold_encoders(model, fold=False)
    return np.concatenate(outputs)


def evaluate(model, dataset, candidates: np.ndarray, batch_size: int) -> dict:
    return precision_at_k(predict_logits(model, dataset, batch_size), dataset.columns["labels"], candidates)


def adam_l2_step(optimizer: AdamW, grads: dict, lr: float, weight_decay: float) -> None:
    """torch.optim.Adam's step: weight decay enters the gradient (g + wd·p) before the moments. `optimizer`
    is an AdamW built with weight_decay=0, whose update is then exactly Adam's."""
    optimizer.step({name: ops.add(grad, ops.mul(optimizer.params[name], weight_decay))
                    for name, grad in grads.items()}, lr)


class BestDevEpoch:
    """The reference's choice of epoch: epoch 0 (the untrained prompt encoder) is evaluated but never
    chosen; a trained epoch whose dev P@1 is at least the best so far becomes the best (ties go to the
    later epoch); `should_stop` after `patience` trained epochs in a row without one."""

    def __init__(self, patience: int):
        self.patience = patience
        self.epoch, self.score, self.epochs_without_gain = None, None, 0

    def update(self, epoch: int, score: float) -> bool:
        """Record one evaluation; True when it is the new best."""
        if epoch == 0:
            return False
        if self.score is None or score >= self.score:
            self.epoch, self.score, self.epochs_without_gain = epoch, score, 0
            return True
        self.epochs_without_gain += 1
        return False

    @property
    def should_stop(self) -> bool:
        return self.epochs_without_gain >= self.patience


def train_epoch(model, grad_fn, optimizer: AdamW, train_set, args: LamaArgs, epoch: int) -> float:
    """One epoch of Adam steps at lr·decay^(epoch−1); the mean training loss."""
    model.set_train(True)
    params = optimizer.params
    lr = args.lr * args.decay_rate ** (epoch - 1)
    drop_last = len(train_set) >= args.batch_size
    losses = []
    for step, indices in enumerate(batch_indices(epoch_order(len(train_set), args.seed, epoch), args.batch_size,
                                                 drop_last=drop_last)):
        seed_step(args.seed, epoch * 1_000_003 + step)
        loss, grads = grad_fn(**to_inputs(train_set.batch(indices)))
        adam_l2_step(optimizer, dict(zip(params, grads)), lr, args.weight_decay)
        losses.append(float(loss.asnumpy()))
    return float(np.mean(losses))


def train_prompts(model, train_set, dev_set, candidates: np.ndarray, args: LamaArgs, log=print) -> dict:
    """Train the trainable weights (the prompt encoder) with early stopping on dev P@1; the model ends
    holding the best trained epoch's weights (`BestDevEpoch`)."""
    if args.max_epochs < 1:
        raise ValueError(f"max_epochs must be >= 1 (epoch 0 is the untrained encoder), got {args.max_epochs}")
    params = trainable_weights(model)
    optimizer = AdamW(params, lr=args.lr, weight_decay=0.0)
    grad_fn = mindspore.value_and_grad(lambda **inputs: model(**inputs)[0], None, list(params.values()))
    untrained = evaluate(model, dev_set, candidates, args.eval_batch_size)["P@1"]
    log(f"epoch 0 (untrained prompts): dev P@1 {untrained:.4f}")
    best, best_weights, epoch = BestDevEpoch(args.early_stop), None, 0
    for epoch in range(1, args.max_epochs + 1):
        loss = train_epoch(model, grad_fn, optimizer, train_set, args, epoch)
        dev_p1 = evaluate(model, dev_set, candidates, args.eval_batch_size)["P@1"]
        log(f"epoch {epoch}: train loss {loss:.4f}, dev P@1 {dev_p1:.4f}")
        if best.update(epoch, dev_p1):
            best_weights = to_numpy(params)
        elif best.should_stop:
            log(f"early stop after epoch {epoch}: no dev gain for {args.early_stop} epochs")
            break
    assign_weights(model, best_weights, strict=False, source=f"best epoch {best.epoch}")
    return {"best_epoch": best.epoch, "best_dev_P@1": best.score, "epoch0_dev_P@1": untrained, "epochs_run": epoch}


def probe_relation(model, tokenizer, vocab_filter: VocabFilter, relation: str, manual_template: str,
                   facts: dict, args: LamaArgs, log=print) -> dict:
    """Manual-template baseline and P-tuning on one relation. `facts`: {split: [Fact]} for train/dev/test.
    Returns the relation's row: fact counts with drop reasons, manual and P-tuning P@1/P@10 on test."""
    kept, reports = {}, {}
    for split in SPLITS:
        kept[split], reports[split] = vocab_filter.filter(facts[split])
        log(f"{relation} {split}: {reports[split].summary()}")
    candidates = vocab_filter.candidate_ids(MODEL)
    manual = QueryBuilder(tokenizer, model.kind, manual=manual_template)
    ptuning = QueryBuilder(tokenizer, model.kind, template=args.template)
    if ptuning.num_pseudo_tokens != model.config.pre_seq_len:
        raise ValueError(f"template {args.template} has {ptuning.num_pseudo_tokens} pseudo tokens for a {model.kind} "
                         f"LM but the probe's prompt encoder has {model.config.pre_seq_len} rows")
    manual_metrics = evaluate(model, encode_facts(kept["test"], manual, tokenizer), candidates, args.eval_batch_size)
    log(f"{relation} manual template: test {manual_metrics}")
    datasets = {split: encode_facts(kept[split], ptuning, tokenizer) for split in SPLITS}
    training = train_prompts(model, datasets["train"], datasets["dev"], candidates, args, log)
    ptuning_metrics = evaluate(model, datasets["test"], candidates, args.eval_batch_size)
    log(f"{relation} P-tuning {args.template}: test {ptuning_metrics} (best dev epoch {training['best_epoch']})")
    all_splits = DropReport()
    for split in SPLITS:
        all_splits.add(reports[split])
    return {"relation": relation, "template": args.template, "num_candidates": int(len(candidates)),
            "facts": {split: reports[split].to_dict() for split in SPLITS}, "facts_all": all_splits.to_dict(),
            "manual": manual_metrics, "ptuning": ptuning_metrics, **training, "args": asdict(args)}


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
    for name, value in asdict(defaults).items():
        parser.add_argument(f"--{name}", type=type(value), default=value)
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
    args = parse_args(argv)
    if args.summarize:
        print(summary_table(load_results(args.summarize)))
        return 0
    lama_args = LamaArgs(**{name: getattr(args, name) for name in asdict(LamaArgs())})
    relations = load_relations(os.path.join(args.data_dir, "relations.jsonl"))
    if args.relation not in relations:
        raise KeyError(f"relation {args.relation!r} is not in {args.data_dir}/relations.jsonl")
    tokenizer = load_tokenizer(args.model_dir)
    tokenizers = {MODEL: tokenizer}
    tokenizers.update({os.path.basename(os.path.normpath(d)): load_tokenizer(d) for d in args.shared_model_dir})
    facts = {split: load_split(args.data_dir, args.relation, split) for split in SPLITS}
    model = load_probe(args.model_dir, lama_args)
    allowed, key = None, None
    if args.vocab_file:
        allowed, key = read_vocab_file(args.vocab_file, tokenizer, args.model_dir, model.backbone.config.model_type,
                                       args.vocab_key)
    result = probe_relation(model, tokenizer, VocabFilter(tokenizers, allowed), args.relation,
                            relations[args.relation], facts, lama_args)
    result["vocabulary"] = {"vocab_file": args.vocab_file, "vocab_key": key, "shared_model_dirs": args.shared_model_dir}
    os.makedirs(args.output_dir, exist_ok=True)
    with open(os.path.join(args.output_dir, f"{args.relation}.json"), "w") as handle:
        json.dump(result, handle, indent=1)
    print(summary_table([result]))
    return 0


if __name__ == "__main__":
    sys.exit(main())

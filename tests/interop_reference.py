"""Torch side of tests/test_interop.py: real torch, transformers 4.56 and peft 0.17 in their own process (never
imports mindnlp). Prints one JSON line.

`make DIR`: tiny BERT / RoBERTa / GPT-2 base models; peft adapters of each kind trained a few steps by real peft
and saved with `save_pretrained`, with the logits peft's model gives on fixed inputs; THUDM/P-tuning-v2 output
directories written from the reference heads (ms_ptuning/reference) under THUDM's parameter names, with the
reference's logits; a peft PrefixTuning adapter trained on the shipped all-MiniLM-L6-v2 weights with its
predicted labels on Rotten Tomatoes snippets.

`check DIR`: the adapters ms_ptuning exported (DIR/exports.json lists them) loaded by real peft
(`PeftModel.from_pretrained(AutoModelFor*.from_pretrained(BASE), OUT)`) or, for THUDM's layout, strictly into
modules with THUDM's attribute names (model/*.py of THUDM/P-tuning-v2) and through the reference heads; the
max |Δlogits| against ms_ptuning's logits per case.
"""

import json
import os
import sys

import numpy as np
import peft
import torch
import transformers
from safetensors.torch import load_file, save_file

# the reference first: the package knows a PyTorch process by it (ms_ptuning.TORCH_SIDE), and then loads no
# mindnlp for the plain modules below
from ms_ptuning.reference.models import HEADS  # isort: skip
from ms_ptuning.config import PTuningConfig
from ms_ptuning.data.packaged import minilm_dir, read_rotten_tomatoes
from ms_ptuning.interop import thudm

SIZES = dict(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
             max_position_embeddings=66, pad_token_id=1)
GPT2_SIZES = dict(vocab_size=100, n_embd=32, n_layer=2, n_head=4, n_positions=64)
AUTO = {"sequence_classification": transformers.AutoModelForSequenceClassification,
        "token_classification": transformers.AutoModelForTokenClassification,
        "question_answering": transformers.AutoModelForQuestionAnswering,
        "causal_lm": transformers.AutoModelForCausalLM}
TASK_TYPES = {"sequence_classification": "SEQ_CLS", "token_classification": "TOKEN_CLS",
              "question_answering": "QUESTION_ANS", "causal_lm": "CAUSAL_LM"}
NUM_LABELS = 3
# (name, backbone, head, peft config class, options): what peft users train
PEFT_CASES = [
    ("bert_seqcls_prefix_projection", "bert", "sequence_classification", peft.PrefixTuningConfig,
     dict(prefix_projection=True, encoder_hidden_size=16)),
    ("roberta_seqcls_prompt_refused", "roberta", "sequence_classification", peft.PromptTuningConfig, {}),
    ("bert_token_prompt", "bert", "token_classification", peft.PromptTuningConfig, {}),
    ("roberta_token_prefix", "roberta", "token_classification", peft.PrefixTuningConfig, {}),
    ("bert_qa_prefix", "bert", "question_answering", peft.PrefixTuningConfig, {}),
    ("roberta_qa_ptuning_mlp", "roberta", "question_answering", peft.PromptEncoderConfig,
     dict(encoder_reparameterization_type="MLP", encoder_hidden_size=32)),
    ("gpt2_lm_prefix", "gpt2", "causal_lm", peft.PrefixTuningConfig, {}),
    ("gpt2_lm_prompt", "gpt2", "causal_lm", peft.PromptTuningConfig, {}),
    ("deberta_token_prompt", "deberta", "token_classification", peft.PromptTuningConfig, {}),
    ("bert_seqcls_prompt_refused", "bert", "sequence_classification", peft.PromptTuningConfig, {}),
]
VIRTUAL = 4


def tiny_config(model_type: str):
    if model_type == "gpt2":
        return transformers.GPT2Config(**GPT2_SIZES)
    return transformers.AutoConfig.for_model(model_type, **SIZES)


def inputs(model_type: str, head: str) -> dict:
    generator = torch.Generator().manual_seed(7)
    input_ids = torch.randint(3, 100, (3, 9), generator=generator)
    attention_mask = torch.ones_like(input_ids)
    if model_type != "gpt2":  # GPT-2 numbers positions from the cache, not the mask: no padding there
        attention_mask[1, -3:] = 0
    return {"input_ids": input_ids, "attention_mask": attention_mask}


def logits_of(output, head: str, virtual: int) -> np.ndarray:
    """peft's output → the real tokens' logits (prompt tuning returns the virtual positions too)."""
    if head == "question_answering":
        logits = torch.stack([output.start_logits, output.end_logits])
        return logits[:, :, -9:].detach().numpy()
    logits = output.logits
    if head != "sequence_classification":
        logits = logits[:, -9:]
    return logits.detach().numpy()


def save_base(directory: str, model_type: str) -> str:
    path = os.path.join(directory, f"base_{model_type}")
    if not os.path.isdir(path):
        torch.manual_seed(1)
        transformers.AutoModel.from_config(tiny_config(model_type)).save_pretrained(path)
    return path


def train_peft(model, batch: dict, head: str, steps: int = 3) -> None:
    """A few AdamW steps on random targets, so every saved weight has moved from its start."""
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    generator = torch.Generator().manual_seed(3)
    rows, width = batch["input_ids"].shape
    if head == "sequence_classification":
        targets = {"labels": torch.randint(0, NUM_LABELS, (rows,), generator=generator)}
    elif head == "question_answering":
        targets = {"start_positions": torch.randint(0, width, (rows,), generator=generator),
                   "end_positions": torch.randint(0, width, (rows,), generator=generator)}
    else:
        targets = {}
    model.train()
    for _ in range(steps):
        output = model(**batch, **targets)
        if head in ("token_classification", "causal_lm"):  # a loss over every output position
            loss = output.logits.float().logsumexp(-1).mean() - output.logits[..., 0].float().mean()
        else:
            loss = output.loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()


def make_peft(directory: str) -> dict:
    cases = {}
    for name, model_type, head, config_class, options in PEFT_CASES:
        base = save_base(directory, model_type)
        torch.manual_seed(2)
        extra = {"num_labels": NUM_LABELS} if head in ("sequence_classification", "token_classification") else {}
        model = AUTO[head].from_pretrained(base, attn_implementation="eager", **extra)
        model = peft.get_peft_model(model, config_class(task_type=TASK_TYPES[head], num_virtual_tokens=VIRTUAL,
                                                        **options))
        batch = inputs(model_type, head)
        train_peft(model, batch, head)
        output_dir = os.path.join(directory, "peft", name)
        model.save_pretrained(output_dir)
        with torch.no_grad():
            logits = logits_of(model(**batch), head, VIRTUAL)
        np.save(os.path.join(output_dir, "expected_logits.npy"), logits)
        cases[name] = {"adapter": output_dir, "base": base, "head": head, "model_type": model_type,
                       "input_ids": batch["input_ids"].tolist(), "attention_mask": batch["attention_mask"].tolist()}
    return cases


def thudm_module(head: str, mode: str, model_type: str, config) -> torch.nn.Module:
    """A module with THUDM's attribute names for this class (read from THUDM/P-tuning-v2 model/*.py): the
    backbone under `bert`/`roberta`, without its pooler for token classification and QA, `prefix_encoder`
    with `embedding` (and `trans`: Linear, Tanh, Linear), `classifier` or `qa_outputs`. Fine-tuning classes are
    transformers' own."""
    if mode == "finetune":
        classes = {"sequence_classification": transformers.AutoModelForSequenceClassification,
                   "token_classification": transformers.AutoModelForTokenClassification,
                   "question_answering": transformers.AutoModelForQuestionAnswering,
                   "multiple_choice": transformers.AutoModelForMultipleChoice}
        return classes[head].from_config(config)
    module = torch.nn.Module()
    pooled = head in ("sequence_classification", "multiple_choice")
    if model_type == "deberta":  # no pooler of its own; THUDM's sequence-level classes add a ContextPooler
        module.deberta = transformers.AutoModel.from_config(config)
        if pooled:
            module.pooler = transformers.models.deberta.modeling_deberta.ContextPooler(config)
    else:
        setattr(module, model_type, transformers.AutoModel.from_config(config, add_pooling_layer=pooled))
    hidden, layers = config.hidden_size, config.num_hidden_layers
    module.prefix_encoder = torch.nn.Module()
    if config.prefix_projection:
        module.prefix_encoder.embedding = torch.nn.Embedding(config.pre_seq_len, hidden)
        module.prefix_encoder.trans = torch.nn.Sequential(torch.nn.Linear(hidden, config.prefix_hidden_size),
                                                          torch.nn.Tanh(),
                                                          torch.nn.Linear(config.prefix_hidden_size, 2 * layers * hidden))
    else:
        module.prefix_encoder.embedding = torch.nn.Embedding(config.pre_seq_len, 2 * layers * hidden)
    if head == "question_answering":
        module.qa_outputs = torch.nn.Linear(hidden, 2)
    else:
        module.classifier = torch.nn.Linear(hidden, 1 if head == "multiple_choice" else config.num_labels)
    return module


THUDM_CASES = [("bert", "sequence_classification", "prefix", dict(prefix_projection=True, prefix_hidden_size=16)),
               ("roberta", "token_classification", "prefix", {}),
               ("bert", "question_answering", "prefix", {}),
               ("roberta", "multiple_choice", "prefix", {}),
               ("deberta", "sequence_classification", "prefix", {}),
               ("roberta", "sequence_classification", "finetune", {}),
               ("bert", "token_classification", "finetune", {})]


def reference_head(model_type: str, head: str, mode: str, options: dict):
    torch.manual_seed(4)
    config = tiny_config(model_type)
    model = HEADS[head](transformers.AutoModel.from_config(config, attn_implementation="eager"),
                        PTuningConfig(mode=mode, pre_seq_len=VIRTUAL, num_labels=NUM_LABELS, **options)).eval()
    with torch.no_grad():  # away from the start, so a weight that is not carried over shows
        for parameter in model.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    return model


def head_inputs(model_type: str, head: str) -> dict:
    batch = inputs(model_type, head)
    if head == "multiple_choice":
        batch = {name: value.reshape(1, 3, 9) for name, value in batch.items()}
    return batch


def reference_logits(model, head: str, batch: dict) -> np.ndarray:
    with torch.no_grad():
        _, logits = model(**batch)
    return (torch.stack(list(logits)) if head == "question_answering" else logits).numpy()


def make_thudm(directory: str) -> dict:
    """THUDM output directories from the reference heads' weights, as THUDM's run.py leaves them (the full state
    dict; config.json with pre_seq_len etc.); one as pytorch_model.bin (THUDM's own file)."""
    cases = {}
    for index, (model_type, head, mode, options) in enumerate(THUDM_CASES):
        name = f"thudm_{model_type}_{head}_{mode}"
        model = reference_head(model_type, head, mode, options)
        state = {thudm.thudm_name(key, thudm.ATTRIBUTES[model_type]): value.contiguous()
                 for key, value in model.state_dict().items()}
        output_dir = os.path.join(directory, "thudm", name)
        os.makedirs(output_dir)
        config = tiny_config(model_type).to_dict()
        config.update(architectures=[thudm.CLASSES[head, mode, model_type]], num_labels=NUM_LABELS,
                      id2label={str(i): f"LABEL_{i}" for i in range(NUM_LABELS)},
                      label2id={f"LABEL_{i}": i for i in range(NUM_LABELS)})
        if mode == "prefix":
            config.update(pre_seq_len=VIRTUAL, prefix_projection=options.get("prefix_projection", False),
                          prefix_hidden_size=options.get("prefix_hidden_size", 512))
        with open(os.path.join(output_dir, "config.json"), "w") as handle:
            json.dump(config, handle)
        # the names must be those of THUDM's class: load them strictly into a module built with its attributes
        thudm_module(head, mode, model_type, transformers.AutoConfig.for_model(**config)).load_state_dict(state)
        if index == 0:  # THUDM's Trainer saves pytorch_model.bin (read only with --allow_pickle)
            torch.save(dict(state, **{f"{model_type}.embeddings.position_ids": torch.arange(66)[None]}),
                       os.path.join(output_dir, "pytorch_model.bin"))
        else:
            save_file(state, os.path.join(output_dir, "model.safetensors"))
        batch = head_inputs(model_type, head)
        np.save(os.path.join(output_dir, "expected_logits.npy"), reference_logits(model, head, batch))
        cases[name] = {"adapter": output_dir, "head": head, "model_type": model_type,
                       **{key: value.tolist() for key, value in batch.items()}}
    return cases


def make_minilm(directory: str, train_count: int = 128, epochs: int = 1, count: int = 48) -> dict:
    """A peft PrefixTuning adapter trained in torch on the shipped all-MiniLM-L6-v2 weights (8 steps on Rotten
    Tomatoes snippets; the classifier at a higher learning rate, so that so short a run already tells
    snippets apart), and what peft predicts for snippets it never saw."""
    base = minilm_dir()
    examples = read_rotten_tomatoes()
    unseen = examples[-count:]
    by_label = [[row for row in examples[:-count] if row["label"] == label] for label in ("fresh", "rotten")]
    train = [row for pair in zip(*by_label) for row in pair][:train_count]  # balanced, alternating
    tokenizer = transformers.AutoTokenizer.from_pretrained(base)
    torch.manual_seed(5)
    model = peft.get_peft_model(
        transformers.AutoModelForSequenceClassification.from_pretrained(base, num_labels=2, attn_implementation="eager"),
        peft.PrefixTuningConfig(task_type="SEQ_CLS", num_virtual_tokens=8))
    classifier = [p for name, p in model.named_parameters() if p.requires_grad and "classifier" in name]
    prefix = [p for name, p in model.named_parameters() if p.requires_grad and "classifier" not in name]
    optimizer = torch.optim.AdamW([{"params": prefix, "lr": 1e-2}, {"params": classifier, "lr": 1e-2}])
    model.train()
    for _ in range(epochs):
        for start in range(0, train_count, 16):
            rows = train[start:start + 16]
            batch = tokenizer([row["text"] for row in rows], padding=True, truncation=True, max_length=32,
                              return_tensors="pt")
            labels = torch.tensor([int(row["label"] == "fresh") for row in rows])
            loss = model(**batch, labels=labels).loss
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    model.eval()
    output_dir = os.path.join(directory, "minilm_peft")
    model.save_pretrained(output_dir)
    with open(os.path.join(directory, "unseen.jsonl"), "w") as handle:
        for row in unseen:
            handle.write(json.dumps({"text": row["text"]}) + "\n")
    batch = tokenizer([row["text"] for row in unseen], padding=True, truncation=True, max_length=512,
                      return_tensors="pt")
    with torch.no_grad():
        probabilities = model(**batch).logits.softmax(-1)
    return {"adapter": output_dir, "input": os.path.join(directory, "unseen.jsonl"),
            "labels": probabilities.argmax(-1).tolist(), "probabilities": probabilities.tolist(),
            "accuracy": float(np.mean([int(row["label"] == "fresh") == label
                                       for row, label in zip(unseen, probabilities.argmax(-1).tolist())]))}


def check(directory: str) -> dict:
    """max |Δlogits| of every export against ms_ptuning's logits (and of the MiniLM export's labels)."""
    with open(os.path.join(directory, "exports.json")) as handle:
        exports = json.load(handle)
    differences = {}
    for name, case in exports.items():
        head, model_type = case["head"], case["model_type"]
        batch = {key: torch.tensor(case[key]) for key in ("input_ids", "attention_mask")}
        if "token_type_ids" in case:
            batch["token_type_ids"] = torch.tensor(case["token_type_ids"])
        ours = np.load(case["logits"])
        if case["format"] == "peft":
            extra = {"num_labels": case["num_labels"]} if "num_labels" in case else {}
            base = AUTO[head].from_pretrained(case["base"], attn_implementation="eager", **extra)
            model = peft.PeftModel.from_pretrained(base, case["output"]).eval()
            with torch.no_grad():
                theirs = logits_of(model(**batch), head, VIRTUAL)
            if "labels" in case:
                differences[f"{name}/labels_equal"] = float(theirs.argmax(-1).tolist() == case["labels"])
        else:
            state = load_file(os.path.join(case["output"], "model.safetensors"))
            with open(os.path.join(case["output"], "config.json")) as handle:
                config = json.load(handle)
            mode = "prefix" if "pre_seq_len" in config else "finetune"
            thudm_module(head, mode, model_type, transformers.AutoConfig.for_model(**config)).load_state_dict(state)
            model = reference_head(model_type, head, mode, {key: config[key] for key in
                                                            ("prefix_projection", "prefix_hidden_size") if key in config})
            model.load_state_dict({thudm.our_name(key, thudm.ATTRIBUTES[model_type]): value
                                   for key, value in state.items()})
            theirs = reference_logits(model, head, batch)
        differences[name] = float(np.abs(theirs - ours).max())
    return differences


def main(command: str, directory: str) -> dict:
    if command == "make":
        cases = {"peft": make_peft(directory), "thudm": make_thudm(directory), "minilm": make_minilm(directory)}
        with open(os.path.join(directory, "made.json"), "w") as handle:
            json.dump(cases, handle)
        return {"made": sorted(cases["peft"]) + sorted(cases["thudm"])}
    return check(directory)


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], sys.argv[2])))
    sys.exit(0)

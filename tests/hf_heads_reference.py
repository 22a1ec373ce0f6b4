"""Torch side of tests/test_thudm_heads.py: the reference mirror's fine-tuning heads against Hugging Face's own
`AutoModelFor*` classes, which THUDM's fine-tuning path (neither --prefix nor --prompt) builds, on the same
weights. Runs in its own process (never imports mindnlp); prints one JSON line {case: max |Δlogits|}."""

import json
import sys

import torch
import transformers

from ms_ptuning.config import PTuningConfig
from ms_ptuning.reference.models import HEADS

SIZES = dict(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
             max_position_embeddings=66, pad_token_id=1)
HF_CLASSES = {"sequence_classification": transformers.AutoModelForSequenceClassification,
              "token_classification": transformers.AutoModelForTokenClassification,
              "question_answering": transformers.AutoModelForQuestionAnswering,
              "multiple_choice": transformers.AutoModelForMultipleChoice}


def hf_name(name: str, model_type: str) -> str:
    """Our head's parameter name → the Hugging Face task model's (`encoder.backbone.` is its `bert.`/`roberta.`)."""
    prefix = "encoder.backbone."
    return f"{model_type}.{name[len(prefix):]}" if name.startswith(prefix) else name


def logits_difference(head: str, model_type: str) -> float:
    torch.manual_seed(0)
    num_labels = 2 if head == "question_answering" else 3  # Hugging Face's QA head reads start and end from labels
    config = transformers.AutoConfig.for_model(model_type, num_labels=num_labels, **SIZES)
    ours = HEADS[head](transformers.AutoModel.from_config(config, attn_implementation="eager"),
                       PTuningConfig(mode="finetune", num_labels=num_labels)).eval()
    theirs = HF_CLASSES[head].from_config(config, attn_implementation="eager").eval()
    weights = {hf_name(name, model_type): tensor for name, tensor in ours.state_dict().items()}
    missing, unexpected = theirs.load_state_dict(weights, strict=False)
    if missing or unexpected:
        raise KeyError(f"{head}/{model_type}: missing {missing}, unexpected {unexpected}")
    shape = (2, 3, 9) if head == "multiple_choice" else (2, 9)
    input_ids = torch.randint(3, 100, shape)
    attention_mask = torch.ones(shape, dtype=torch.long)
    attention_mask[..., -2:] = 0
    with torch.no_grad():
        _, our_logits = ours(input_ids=input_ids, attention_mask=attention_mask)
        outputs = theirs(input_ids=input_ids, attention_mask=attention_mask)
    if head == "question_answering":
        their_logits = torch.stack([outputs.start_logits, outputs.end_logits])
        our_logits = torch.stack(list(our_logits))
    else:
        their_logits = outputs.logits
    return float((our_logits - their_logits).abs().max())


if __name__ == "__main__":
    print(json.dumps({f"{head}/{model_type}": logits_difference(head, model_type)
                      for head in HF_CLASSES for model_type in ("bert", "roberta")}))
    sys.exit(0)

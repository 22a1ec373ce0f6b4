"""The heads' losses as Hugging Face computes them in real torch, with their gradients: the reference for
tests/test_losses.py. Run as a script in its own process (it must never import mindnlp, which turns
`import torch` into mindtorch): `python torch_losses.py cases.npz results.npz`.

Each case `<name>.<array>` in cases.npz holds the inputs; `<name>.loss` and `<name>.grad.<input>` come back.
"""

import sys

import numpy as np
import torch
import torch.nn.functional as F

IGNORE_INDEX = -100


def sequence_classification(problem_type):
    def loss(logits, labels):
        if problem_type == "regression":  # Hugging Face with num_labels = 1
            return F.mse_loss(logits.squeeze(), labels.squeeze())
        if problem_type == "single_label_classification":
            return F.cross_entropy(logits.view(-1, logits.shape[-1]), labels.view(-1))
        return F.binary_cross_entropy_with_logits(logits, labels)
    return loss


def token_classification(logits, labels, attention_mask):
    active = attention_mask.view(-1) == 1
    targets = torch.where(active, labels.view(-1), torch.tensor(IGNORE_INDEX).type_as(labels))
    return F.cross_entropy(logits.view(-1, logits.shape[-1]), targets)


def span_extraction(start_logits, end_logits, start_positions, end_positions):
    ignored_index = start_logits.size(1)
    start_positions = start_positions.clamp(0, ignored_index)
    end_positions = end_positions.clamp(0, ignored_index)
    start_loss = F.cross_entropy(start_logits, start_positions, ignore_index=ignored_index)
    end_loss = F.cross_entropy(end_logits, end_positions, ignore_index=ignored_index)
    return (start_loss + end_loss) / 2


def causal_lm(logits, labels):
    """GPT2LMHeadModel's shifted loss: the mean over the labelled next tokens."""
    shifted = logits[:, :-1].contiguous()
    return F.cross_entropy(shifted.view(-1, shifted.shape[-1]), labels[:, 1:].contiguous().view(-1))


LOSSES = {"single_label": sequence_classification("single_label_classification"),
          "regression": sequence_classification("regression"),
          "multi_label": sequence_classification("multi_label_classification"),
          "token_classification": token_classification, "span_extraction": span_extraction, "causal_lm": causal_lm}
# argument order of each loss, and which arguments are differentiated
ARGUMENTS = {"single_label": ("logits", "labels"), "regression": ("logits", "labels"),
             "multi_label": ("logits", "labels"), "token_classification": ("logits", "labels", "attention_mask"),
             "span_extraction": ("start_logits", "end_logits", "start_positions", "end_positions"),
             "causal_lm": ("logits", "labels")}


def main(source: str, target: str) -> None:
    arrays = np.load(source)
    results = {}
    for case, loss_fn in LOSSES.items():
        tensors = {}
        for name in ARGUMENTS[case]:
            values = arrays[f"{case}.{name}"]
            tensors[name] = torch.tensor(values, requires_grad=values.dtype == np.float32 and "logits" in name)
        loss = loss_fn(*(tensors[name] for name in ARGUMENTS[case]))
        loss.backward()
        results[f"{case}.loss"] = loss.detach().numpy()
        for name, tensor in tensors.items():
            if tensor.requires_grad:
                results[f"{case}.grad.{name}"] = tensor.grad.numpy()
    np.savez(target, **results)


if __name__ == "__main__":
    main(*sys.argv[1:])

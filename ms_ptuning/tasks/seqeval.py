"""Entity-level precision/recall/F1 over BIO tag sequences, as seqeval's default (conlleval) mode computes
them for the reference's NER and SRL scores.

Chunking accepts IOB2 and IOB1: a chunk starts at `B-X`, or at `I-X` that does not continue a chunk of
type X (after `O` or another type); it ends before `O`, `B-*` or a tag of another type.
"""

import numpy as np


def split_tag(tag: str) -> tuple:
    """"B-PER" → ("B", "PER"); "O" → ("O", "")."""
    if tag == "O":
        return "O", ""
    prefix, _, kind = tag.partition("-")
    if prefix not in ("B", "I") or not kind:
        raise ValueError(f"tag {tag!r} is not O, B-<type> or I-<type>")
    return prefix, kind


def entities(tags) -> set:
    """{(type, first index, last index)} of the chunks in one tag sequence."""
    found, start, current = set(), None, ""
    for index, tag in enumerate(list(tags) + ["O"]):
        prefix, kind = split_tag(tag)
        continues = prefix == "I" and kind == current
        if start is not None and not continues:
            found.add((current, start, index - 1))
            start, current = None, ""
        if prefix != "O" and not continues:
            start, current = index, kind
    return found


def entity_scores(true_sequences, predicted_sequences) -> dict:
    """Micro-averaged entity precision/recall/F1 and token accuracy over paired tag sequences."""
    true_count = predicted_count = correct = tokens = right_tokens = 0
    for true, predicted in zip(true_sequences, predicted_sequences, strict=True):
        if len(true) != len(predicted):
            raise ValueError(f"tag sequences of different lengths: {len(true)} and {len(predicted)}")
        true_entities, predicted_entities = entities(true), entities(predicted)
        true_count += len(true_entities)
        predicted_count += len(predicted_entities)
        correct += len(true_entities & predicted_entities)
        tokens += len(true)
        right_tokens += sum(t == p for t, p in zip(true, predicted))
    precision = correct / predicted_count if predicted_count else 0.0
    recall = correct / true_count if true_count else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1,
            "accuracy": right_tokens / tokens if tokens else 0.0}


def tag_sequences(predicted_ids: np.ndarray, label_ids: np.ndarray, names: tuple) -> tuple:
    """(true, predicted) tag-name sequences of (N, T) id arrays, keeping positions whose label is not -100."""
    true, predicted = [], []
    for predicted_row, label_row in zip(predicted_ids, label_ids):
        keep = label_row != -100
        true.append([names[i] for i in label_row[keep]])
        predicted.append([names[i] for i in predicted_row[keep]])
    return true, predicted

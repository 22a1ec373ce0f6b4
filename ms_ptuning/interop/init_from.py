"""`--init_from DIR`: start training from an adapter's weights (ms_ptuning's, peft's or THUDM's).

The run builds its model from its own flags as usual; the adapter must fit it (same head, mode, prompt/prefix
length, encoder and label count, or a clear error naming the field and the flag), and its weights then
replace the new model's. Weights the run keeps frozen (the backbone in prefix/prompt mode) must equal the
base model's: the adapter saved after training holds only trainable weights, so frozen weights taken from
DIR would be lost on reload (peft's RoBERTa classification head, whose `dense` layer is ms_ptuning's frozen
pooler, is the case this refuses).
"""

import numpy as np

from . import read_adapter

# PTuningConfig fields that decide which weights exist and their shapes, with the flag that sets each
FITTING_FIELDS = (("mode", "--mode"), ("pre_seq_len", "--pre_seq_len"), ("prefix_projection", "--prefix_projection"),
                  ("prefix_hidden_size", "--prefix_hidden_size"), ("prompt_encoder_type", "--prompt_encoder_type"),
                  ("num_labels", None))


def relevant(field: str, config: dict, head: str) -> bool:
    mode = config["mode"]
    return {"pre_seq_len": mode != "finetune", "prefix_projection": mode == "prefix",
            "prefix_hidden_size": mode == "prefix" and config["prefix_projection"],
            "prompt_encoder_type": mode == "prompt",
            "num_labels": head in ("sequence_classification", "token_classification")}.get(field, True)


def init_from(model, directory: str, base: str = None, allow_pickle: bool = False) -> None:
    """Load the adapter in `directory` into `model` (an ms_ptuning head built for the run)."""
    from ..weights import assign_weights, named_weights, to_numpy, trainable_weights
    adapter = read_adapter(directory, base, allow_pickle)
    saved, ours = adapter.config["ptuning_config"], model.config.to_dict()
    where = f"--init_from {directory}"
    if adapter.config["head"] != model.head_name:
        raise ValueError(f"{where}: a {adapter.config['head']} adapter, but the task's head is {model.head_name}")
    for field, flag in FITTING_FIELDS:
        if relevant(field, saved, model.head_name) and saved[field] != ours[field]:
            fix = f"pass {flag} {saved[field]}" if flag else "use a task with as many labels"
            raise ValueError(f"{where}: the adapter's {field} is {saved[field]!r}, the run's {ours[field]!r}; {fix}")
    weights = named_weights(model)
    trainable = trainable_weights(model)
    missing = sorted(set(trainable) - set(adapter.weights))
    if missing:
        raise ValueError(f"{where}: {adapter.source} lacks trainable weights {missing[:10]}")
    unknown = sorted(set(adapter.weights) - set(weights))
    if unknown:
        raise ValueError(f"{where}: {adapter.source} has weights the model does not: {unknown[:10]}")
    frozen = {name: array for name, array in adapter.weights.items() if name not in trainable}
    current = to_numpy({name: weights[name] for name in frozen})
    for name, array in frozen.items():
        if array.shape == current[name].shape and not np.array_equal(array.astype(current[name].dtype), current[name]):
            raise ValueError(f"{where}: {adapter.source}'s {name} differs from the base model's, and the run keeps it "
                             "frozen (the adapter saved after training holds trainable weights only); pass the base "
                             "model the adapter was trained on (--model_name_or_path)")
    assign_weights(model, adapter.weights, strict=False, source=adapter.source)

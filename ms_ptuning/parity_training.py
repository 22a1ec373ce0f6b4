"""Same start, same batches → same training curve: N optimizer steps of ms_ptuning's Trainer against the torch
reference training with `torch.optim.AdamW`, `transformers.get_scheduler` and `clip_grad_norm_` (or, with
settings `optim="adam_l2"` and `lr_decay_per_epoch`, THUDM/P-tuning's `torch.optim.Adam` with L2 weight decay
and `ExponentialLR` stepped per epoch).

The reference (`python -m ms_ptuning.reference.train`) initialises the model, writes its weights, trains on the
micro-batches this side says the Trainer will draw, and writes its per-step losses, gradient norms and final
trainable weights. This side loads the same initial weights and runs the real `Trainer.train()` (dropout 0),
whose per-step losses come from its metrics log, on each backend asked for: eager (the mindnlp model,
`EagerSteps`) or graph (the native Cells, `GraphSteps`); with both, the graph's curve is also compared with
the eager one. `scripts/compare_torch.sh --train_steps N [--backend graph]` prints the table.
"""

import argparse
import json
import os
import sys
import tempfile

import numpy as np
import transformers
from safetensors.numpy import load_file, save_file
from transformers.trainer_callback import PrinterCallback

from .arguments import RunTrainingArguments
from .config import PTuningConfig
from .data.dataset import ArrayDataset, batch_indices, epoch_order
from .execution import choose_backend
from .parity import BACKENDS, load_reference_model, reference_process, wait_for_reference, write_case
from .training import EagerSteps, Trainer
from .weights import to_numpy, trainable_weights

# What both sides train with: warmup then linear decay, clipping, accumulation, decoupled weight decay.
SETTINGS = dict(learning_rate=5e-3, lr_scheduler_type="linear", warmup_steps=5, max_grad_norm=0.5,
                gradient_accumulation_steps=2, per_device_train_batch_size=4, weight_decay=0.01,
                adam_beta1=0.9, adam_beta2=0.999, adam_epsilon=1e-8, seed=7)
# Per case, so that clipping is active on some steps (the norms measured below) and the loss falls without
# collapsing to ~0, where relative loss differences measure rounding only: fine-tuning every weight at 5e-3
# memorises the 24 examples within 30 steps (loss 3e-4); GPT-2's prefix gradients have norms about 0.02.
CASE_SETTINGS = {("bert", "finetune"): dict(learning_rate=5e-4), ("roberta", "finetune"): dict(learning_rate=5e-4),
                 ("gpt2", "prefix"): dict(learning_rate=3e-2, max_grad_norm=0.02)}


def settings_for(model_type: str, mode: str) -> dict:
    return {**SETTINGS, **CASE_SETTINGS.get((model_type, mode), {})}


def micro_batch_order(num_examples: int, settings: dict, steps: int) -> np.ndarray:
    """(steps, accumulation, batch) example indices: the micro-batches `Trainer.train()` draws, epoch by epoch
    in its seeded order. The dataset must split into whole optimizer steps, so no epoch ends mid-step."""
    batch, accumulation = settings["per_device_train_batch_size"], settings["gradient_accumulation_steps"]
    if num_examples % (batch * accumulation):
        raise ValueError(f"{num_examples} examples do not split into optimizer steps of {accumulation} × {batch}")
    order, epoch = [], 0
    while len(order) < steps * accumulation:
        order.extend(batch_indices(epoch_order(num_examples, settings["seed"], epoch), batch))
        epoch += 1
    return np.stack(order[:steps * accumulation]).reshape(steps, accumulation, batch)


def trainer_run(model, columns: dict, settings: dict, steps: int, output_dir: str, engine=EagerSteps):
    """ms_ptuning's side: the real Trainer on step engine `engine` for `steps` optimizer steps; (per-step
    losses, per-step gradient norms before clipping, final trainable weights). The one place that knows how
    the Trainer reports steps."""
    args = RunTrainingArguments(output_dir=output_dir, max_steps=steps, logging_steps=1, eval_strategy="no",
                                save_strategy="no", report_to=[], disable_tqdm=True, **settings)
    trainer = Trainer(model, args, train_dataset=ArrayDataset(columns), steps=engine)
    trainer.remove_callback(PrinterCallback)  # the table is the output, not every step's log line
    trainer.train()
    with open(os.path.join(output_dir, "metrics.jsonl")) as handle:
        records = [record for record in map(json.loads, handle) if "loss" in record]
    return (np.array([r["loss"] for r in records]), np.array([r["grad_norm"] for r in records]),
            to_numpy(trainable_weights(model)))


def compare_training(head: str, backbone_config, ptuning_config: PTuningConfig, columns: dict, steps: int,
                     settings: dict = SETTINGS, backends: tuple = ("eager",)) -> dict:
    """Both sides trained `steps` optimizer steps from the same weights on the same micro-batches:
    {backend: `training_differences` against torch} for each of `backends`, and with both
    "graph_vs_eager": the graph's run against the eager one."""
    return compare_trainings([(head, backbone_config, ptuning_config, columns, steps, settings)], [backends])[0]


def compare_trainings(cases: list, backends: list) -> list:
    """`compare_training` for each (head, backbone_config, ptuning_config, columns, steps, settings) case, on that
    case's tuple of `backends`, one reference process serving them all (its start-up, importing torch and
    transformers, costs more than a tiny run) and running ahead: each case trains on this side once the
    reference has written its initial weights, while the reference trains."""
    with tempfile.TemporaryDirectory(prefix="ms_ptuning_training_") as root:
        workdirs = [os.path.join(root, str(index)) for index in range(len(cases))]
        for workdir, case in zip(workdirs, cases):
            write_training_case(workdir, *case)
        log_path = os.path.join(root, "reference.log")
        with reference_process(workdirs, log_path, module="ms_ptuning.reference.train") as process:
            results = []
            for workdir, (head, backbone_config, ptuning_config, columns, steps, settings), case_backends in zip(
                    workdirs, cases, backends):
                wait_for_reference(process, workdir, log_path, "weights.safetensors")
                runs = {}
                for backend in case_backends:
                    model = load_reference_model(workdir, head, backbone_config, ptuning_config, backend)
                    engine = choose_backend(backend, backbone_config.model_type).steps
                    runs[backend] = trainer_run(model, columns, settings, steps, os.path.join(workdir, backend),
                                                engine)
                wait_for_reference(process, workdir, log_path, "reference_training.safetensors")
                reference = load_file(os.path.join(workdir, "reference_training.safetensors"))
                results.append(training_results(runs, reference, settings["max_grad_norm"]))
    return results


def write_training_case(workdir: str, head: str, backbone_config, ptuning_config: PTuningConfig, columns: dict,
                        steps: int, settings: dict) -> None:
    """The reference's inputs: the model spec, the examples with the micro-batch order, the settings."""
    os.mkdir(workdir)
    num_examples = len(next(iter(columns.values())))
    order = micro_batch_order(num_examples, settings, steps)
    write_case(workdir, head, backbone_config, ptuning_config, {}, seed=0)
    save_file({"order": order, **{f"data.{name}": np.ascontiguousarray(v) for name, v in columns.items()}},
              os.path.join(workdir, "training_data.safetensors"))
    with open(os.path.join(workdir, "training.json"), "w") as handle:
        json.dump({"steps": steps, "steps_per_epoch": num_examples // order.shape[1] // order.shape[2],
                   **settings}, handle)


def training_results(runs: dict, reference: dict, max_grad_norm: float) -> dict:
    """{backend: `training_differences` against torch}, and with both "graph_vs_eager"."""
    results = {backend: training_differences(*run, reference, max_grad_norm) for backend, run in runs.items()}
    if {"eager", "graph"} <= set(runs):
        losses, norms, weights = runs["eager"]
        eager = {"loss": losses, "grad_norm": norms, **{f"weight.{name}": value for name, value in weights.items()}}
        results["graph_vs_eager"] = training_differences(*runs["graph"], eager, max_grad_norm)
    return results


def training_differences(losses, norms, weights: dict, reference: dict, max_grad_norm: float) -> dict:
    """`loss_max_rel`: the largest |loss_ms − loss_torch| / |loss_torch| over the steps. `weights_rel`: the
    final trainable weights as one vector, max |w_ms − w_torch| / max |w_torch|. `tensor_rel`: per tensor,
    max |Δ| / max |w_torch| of that tensor; it is large for tensors that stay near zero (a balanced classifier's
    bias, attention key biases, whose gradient is zero by construction) while their |Δ| stays tiny."""
    reference_weights = {name[len("weight."):]: value for name, value in reference.items() if name.startswith("weight.")}
    if set(reference_weights) != set(weights):
        raise AssertionError(f"trainable weights differ: only ms {sorted(set(weights) - set(reference_weights))}, "
                             f"only torch {sorted(set(reference_weights) - set(weights))}")
    loss_rel = np.abs(losses - reference["loss"]) / np.abs(reference["loss"])
    largest = {name: float(np.abs(ref).max()) for name, ref in reference_weights.items()}
    difference = {name: float(np.abs(weights[name] - ref).max()) for name, ref in reference_weights.items()}
    tensor_rel = {name: difference[name] / max(largest[name], 1e-30) for name in difference}
    return {"steps": len(losses), "loss_max_rel": float(loss_rel.max()),
            "weights_rel": max(difference.values()) / max(largest.values()), "tensor_rel": tensor_rel,
            "tensor_max": largest, "grad_norm_max_rel": float((np.abs(norms - reference["grad_norm"])
                                                               / reference["grad_norm"]).max()),
            "clipped_steps": int((reference["grad_norm"] > max_grad_norm).sum()) if max_grad_norm > 0 else 0,
            "first_loss": float(reference["loss"][0]), "last_loss": float(reference["loss"][-1])}


def training_data(head: str, config, size: int = 24, seq_len: int = 12, num_labels: int = 2, seed: int = 0) -> dict:
    """Random padded inputs with labels: sequence classes, or next-token targets (padding -100) for an LM."""
    rng = np.random.default_rng(seed)
    mask = np.ones((size, seq_len), np.int64)
    mask[::3, seq_len * 2 // 3:] = 0  # every third row padded
    ids = rng.integers(3, config.vocab_size, (size, seq_len)).astype(np.int64)
    columns = {"input_ids": ids, "attention_mask": mask}
    if head == "causal_lm":
        columns["labels"] = np.where(mask == 1, ids, -100)
    else:
        columns["labels"] = rng.integers(0, num_labels, size).astype(np.int64)
    return columns


def tiny_backbone_config(model_type: str):
    """A 2-layer, hidden-64 backbone without dropout (both sides must draw no random masks)."""
    if model_type == "gpt2":
        return transformers.GPT2Config(vocab_size=200, n_embd=64, n_layer=2, n_head=4, n_positions=64,
                                       resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    return transformers.AutoConfig.for_model(model_type, vocab_size=200, hidden_size=64, num_hidden_layers=2,
                                             num_attention_heads=4, intermediate_size=128, max_position_embeddings=128,
                                             hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)


VARIANTS = {"prefix": dict(mode="prefix"), "prefix+projection": dict(mode="prefix", prefix_projection=True),
            "prompt": dict(mode="prompt"), "prompt-lstm": dict(mode="prompt", prompt_encoder_type="lstm"),
            "finetune": dict(mode="finetune")}


def curve_row(model_type: str, variant: str, compared: str, r: dict) -> str:
    """One line of the training-curve table: `compared` is a backend (against torch) or graph_vs_eager."""
    tensor = max(r["tensor_rel"], key=r["tensor_rel"].get)
    return (f"{model_type:<8} {variant:<18} {compared:<15} {r['steps']:>5} {r['loss_max_rel']:>12.2e} "
            f"{r['weights_rel']:>11.2e} {r['clipped_steps']:>7}  {r['first_loss']:.4f} → {r['last_loss']:.4f}  "
            f"{tensor} ({r['tensor_rel'][tensor]:.1e}, {r['tensor_max'][tensor]:.1e})")


def main(argv=None) -> int:
    """`scripts/compare_torch.sh --train_steps N`: the training-curve table."""
    parser = argparse.ArgumentParser(description="ms_ptuning's Trainer vs a torch training loop, same start")
    parser.add_argument("--train_steps", type=int, required=True)
    parser.add_argument("--model_types", default="bert,gpt2")
    parser.add_argument("--variants", default="prefix,prompt,finetune")
    parser.add_argument("--backend", default="eager", choices=BACKENDS,
                        help="the backend trained; graph is also compared with eager from the same start")
    options = parser.parse_args(argv)
    print(f"{'backbone':<8} {'variant':<18} {'compared':<15} {'steps':>5} {'loss max-rel':>12} {'weights rel':>11} "
          f"{'clipped':>7}  loss first → last  worst tensor (max-rel, its max |w|)")
    worst_loss = worst_weights = 0.0
    for model_type in options.model_types.split(","):
        head = "causal_lm" if model_type == "gpt2" else "sequence_classification"
        config = tiny_backbone_config(model_type)
        backends = ("eager", "graph") if options.backend == "graph" else ("eager",)
        for variant in options.variants.split(","):
            ptuning = PTuningConfig(pre_seq_len=4, prefix_hidden_size=32, prefix_dropout=0.0, classifier_dropout=0.0,
                                    **VARIANTS[variant])
            results = compare_training(head, config, ptuning, training_data(head, config), options.train_steps,
                                       settings_for(model_type, ptuning.mode), backends)
            for compared, r in results.items():
                worst_loss, worst_weights = max(worst_loss, r["loss_max_rel"]), max(worst_weights, r["weights_rel"])
                print(curve_row(model_type, variant, compared, r))
    passed = worst_loss <= 1e-4 and worst_weights <= 1e-4
    print(f"worst: loss {worst_loss:.2e}, final weights {worst_weights:.2e} (limits 1e-4): {'PASS' if passed else 'FAIL'}")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())

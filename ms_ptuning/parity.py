"""Same weights → same numbers: run one batch through ms_ptuning and through the torch reference.

The reference runs in a subprocess (`python -m ms_ptuning.reference.run`), initialises the model, writes
its weights as safetensors; this side loads those weights, computes logits, loss and trainable gradients
in eval mode (no dropout) and reports the largest differences. `backend` says which of ms_ptuning's
backends is measured: `eager` (the mindnlp model op by op) or `graph` (the weights in the native Cells,
loss and gradients as one GRAPH_MODE graph); with both, the graph's numbers are also compared with the
eager ones on the same weights, by the same metric.
"""

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
import mindspore
from mindspore import ParameterTuple, Tensor, nn, ops
from safetensors.numpy import load_file, save_file

from .backend import graph_mode, torch
from .config import PTuningConfig
from .backbones import build_backbone
from .execution import choose_backend
from .models import HEADS
from .native import to_native
from .training.graph_steps import ModelCall
from .weights import assign_weights, named_weights, to_numpy, trainable_weights
import transformers

BACKENDS = ("eager", "graph")


def reference_command(workdirs, threads: int = 1, module: str = "ms_ptuning.reference.run"):
    """(argv, env) of one reference process for the given exchange directories."""
    return [sys.executable, "-m", module, *workdirs], dict(os.environ, MS_PTUNING_THREADS=str(threads))


@contextlib.contextmanager
def reference_process(workdirs: list, log_path: str, module: str = "ms_ptuning.reference.run"):
    """One reference process over `workdirs`, writing to `log_path` (a file, not a pipe: a full pipe would
    stall it); killed if it still runs when the block ends."""
    with open(log_path, "w") as log:
        argv, env = reference_command(workdirs, module=module)
        process = subprocess.Popen(argv, env=env, stdout=log, stderr=log)
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()


def run_reference(*workdirs: str, threads: int = 1) -> None:
    """Run the torch reference on each exchange directory, all in one process."""
    argv, env = reference_command(workdirs, threads)
    result = subprocess.run(argv, env=env, capture_output=True, text=True)
    if result.returncode:
        raise RuntimeError(f"torch reference failed (exit {result.returncode}):\n{result.stderr[-4000:]}")


def build_model(head: str, backbone_config, ptuning_config: PTuningConfig, backend: str = "eager"):
    """The head over a randomly initialised backbone: the mindnlp model (eager) or its native Cell (graph)."""
    backbone = choose_backend(backend, backbone_config.model_type).backbone(build_backbone(backbone_config))
    return HEADS[head](backbone, ptuning_config)


class LossAndGradients(nn.Cell):
    """`((loss, outputs), gradients of params)` of `model(**inputs)`, inputs given positionally in `names`
    order: what `forward_and_grads` computes op by op, as one graph."""

    def __init__(self, model, names: tuple, params: list):
        super().__init__(auto_prefix=False)
        self.call = ModelCall(model, names)
        self.grad_fn = ops.value_and_grad(self.outputs, None, ParameterTuple(params), has_aux=True)

    def outputs(self, inputs):  # a tuple: value_and_grad takes no *varargs function
        return self.call(*inputs)

    def construct(self, *inputs):
        return self.grad_fn(inputs)


def forward_and_grads(model, batch: dict, backend: str = "eager"):
    """Eval-mode loss, logits and {name: grad} for the trainable weights, all as numpy; on `graph` computed by
    one compiled graph (the model must hold a native backbone)."""
    if backend == "graph":
        return compiled_forward_and_grads(model, batch)
    model.set_train(False)
    weights = trainable_weights(model)
    inputs = {name: torch.tensor(array) for name, array in batch.items()}

    def loss_fn(**kwargs):
        loss, logits = model(**kwargs)
        return loss, logits

    grad_fn = mindspore.value_and_grad(loss_fn, None, list(weights.values()), has_aux=True)
    (loss, logits), grads = grad_fn(**inputs)
    return as_numpy(loss, logits, weights, grads)


def compiled_forward_and_grads(model, batch: dict):
    """`forward_and_grads` as one GRAPH_MODE graph (compiled for this batch's shapes), for a model of native
    Cells (the graph backend)."""
    model.set_train(False)
    weights = trainable_weights(model)
    graph = LossAndGradients(model, tuple(batch), list(weights.values()))
    with graph_mode():
        (loss, logits), grads = graph(*[Tensor(np.ascontiguousarray(array)) for array in batch.values()])
    return as_numpy(loss, logits, weights, grads)


def as_numpy(loss, logits, weights: dict, grads) -> tuple:
    logits = tuple(part.asnumpy() for part in logits) if isinstance(logits, tuple) else logits.asnumpy()
    return float(loss.asnumpy()), logits, {name: grad.asnumpy() for name, grad in zip(weights, grads)}


def native_twin(model, head: str, backbone_config, ptuning_config: PTuningConfig):
    """The same head over the native backbone (the graph backend), holding a copy of `model`'s weights."""
    twin = HEADS[head](to_native(build_backbone(backbone_config)), ptuning_config)
    assign_weights(twin, to_numpy(named_weights(model)), source="the eager model's weights")
    return twin


def named_outputs(logits) -> dict:
    """The reference's names for a head's outputs: `logits`, or `logits.<i>` for a tuple of them."""
    if isinstance(logits, tuple):
        return {f"logits.{i}": part for i, part in enumerate(logits)}
    return {"logits": logits}


def compare(head: str, backbone_config, ptuning_config: PTuningConfig, batch: dict, seed: int = 0) -> dict:
    """Max-abs logit/loss difference and the largest per-tensor relative gradient difference
    max |g_ms − g_torch| / max(max |g_torch|, 1e-3 · largest |g_torch| of any tensor).

    The floor keeps gradients that are zero up to rounding (e.g. attention key biases, which softmax
    ignores) from turning float noise into a huge "relative" error."""
    model, reference, _ = run_with_reference(head, backbone_config, ptuning_config, batch, seed)
    return differences(model, batch, reference)


def run_with_reference(head: str, backbone_config, ptuning_config: PTuningConfig, batch: dict, seed: int = 0,
                       generate: dict = None):
    """Run the reference on `batch` and return (this side's model holding the reference's weights, the
    reference's outputs, its greedy generations or None). `generate` ({"prompts": [[ids]],
    "max_new_tokens", "eos_token_id"}) asks the reference for its own greedy decode of the prompts."""
    with tempfile.TemporaryDirectory(prefix="ms_ptuning_parity_") as workdir:
        write_case(workdir, head, backbone_config, ptuning_config, batch, seed, generate)
        run_reference(workdir)
        return load_case(workdir, head, backbone_config, ptuning_config, generate is not None)


def compare_many(cases: list, backends: tuple | list = ("eager",)) -> list:
    """For each (head, backbone_config, ptuning_config, batch) case, {backend: `compare`'s numbers} for each of
    `backends` (one tuple for every case, or a list of one tuple per case), and with both backends
    "graph_vs_eager": the graph's numbers against the eager ones on the same weights (the eager side as the
    reference). One reference process serves all cases (its start-up, importing torch and transformers,
    costs more than a tiny case) and runs ahead of this side: each case is compared as soon as the
    reference has written it."""
    per_case = backends if isinstance(backends, list) else [backends] * len(cases)
    unknown = set().union(*per_case) - set(BACKENDS)
    if unknown:
        raise ValueError(f"unknown backends {sorted(unknown)}; parity covers {', '.join(BACKENDS)}")
    with tempfile.TemporaryDirectory(prefix="ms_ptuning_parity_") as root:
        workdirs = [os.path.join(root, str(i)) for i in range(len(cases))]
        for workdir, case in zip(workdirs, cases):
            os.mkdir(workdir)
            write_case(workdir, *case)
        log_path = os.path.join(root, "reference.log")
        with reference_process(workdirs, log_path) as process:
            results = []
            for workdir, case, case_backends in zip(workdirs, cases, per_case):
                wait_for_reference(process, workdir, log_path)
                results.append(compare_backends(workdir, *case, case_backends))
    return results


def compare_backends(workdir: str, head: str, backbone_config, ptuning_config: PTuningConfig, batch: dict,
                     backends: tuple) -> dict:
    """`compare_many`'s result for one case whose reference outputs are in `workdir`."""
    reference = load_file(os.path.join(workdir, "reference_outputs.safetensors"))
    measured, result = {}, {}
    for backend in backends:
        model = load_reference_model(workdir, head, backbone_config, ptuning_config, backend)
        measured[backend] = forward_and_grads(model, batch, backend)
        result[backend] = output_differences(measured[backend], reference)
    if {"eager", "graph"} <= set(measured):
        result["graph_vs_eager"] = output_differences(measured["graph"], as_reference(measured["eager"]))
    return result


def wait_for_reference(process, workdir: str, log_path: str, name: str = "reference_outputs.safetensors") -> None:
    """Until the reference `process` has written file `name` of `workdir` (its failure raises, with its log)."""
    outputs = os.path.join(workdir, name)
    while not os.path.exists(outputs):
        if process.poll() is not None and not os.path.exists(outputs):
            with open(log_path) as log:
                raise RuntimeError(f"torch reference failed (exit {process.returncode}) before {workdir}:\n"
                                   f"{log.read()[-4000:]}")
        time.sleep(0.05)


def write_case(workdir: str, head: str, backbone_config, ptuning_config: PTuningConfig, batch: dict, seed: int = 0,
               generate: dict = None) -> None:
    """The reference's inputs: spec.json and batch.safetensors."""
    spec = {"head": head, "backbone_config": backbone_config.to_dict(),
            "ptuning_config": ptuning_config.to_dict(), "seed": seed}
    if generate is not None:
        spec["generate"] = generate
    with open(os.path.join(workdir, "spec.json"), "w") as handle:
        json.dump(spec, handle)
    save_file({k: np.ascontiguousarray(v) for k, v in batch.items()}, os.path.join(workdir, "batch.safetensors"))


def load_case(workdir: str, head: str, backbone_config, ptuning_config: PTuningConfig, generated: bool = False,
              backend: str = "eager"):
    """(this side's model holding the reference's weights, the reference's outputs, its generations or None)."""
    reference = load_file(os.path.join(workdir, "reference_outputs.safetensors"))
    generations = None
    if generated:
        with open(os.path.join(workdir, "reference_generations.json")) as handle:
            generations = json.load(handle)
    return load_reference_model(workdir, head, backbone_config, ptuning_config, backend), reference, generations


def load_reference_model(workdir: str, head: str, backbone_config, ptuning_config: PTuningConfig,
                         backend: str = "eager"):
    """This side's model on `backend` holding the weights the reference initialised (its weights.safetensors)."""
    model = build_model(head, backbone_config, ptuning_config, backend)
    assign_weights(model, load_file(os.path.join(workdir, "weights.safetensors")), source="reference weights")
    return model


def differences(model, batch: dict, reference: dict, backend: str = "eager") -> dict:
    """`compare`'s numbers for a model that already holds the reference's weights."""
    return output_differences(forward_and_grads(model, batch, backend), reference)


def as_reference(outputs: tuple) -> dict:
    """(loss, logits, grads) in the reference's output format, to compare one backend with another."""
    loss, logits, grads = outputs
    return {"loss": np.array([loss]), **named_outputs(logits), **{f"grad.{name}": grad for name, grad in grads.items()}}


def output_differences(outputs: tuple, reference: dict) -> dict:
    """`compare`'s numbers for (loss, logits, grads) as `forward_and_grads` or `compiled_forward_and_grads`
    return them."""
    loss, logits, grads = outputs
    reference_grads = {k[len("grad."):]: v for k, v in reference.items() if k.startswith("grad.")}
    if set(reference_grads) != set(grads):
        raise AssertionError(f"trainable parameters differ: only ms {sorted(set(grads) - set(reference_grads))}, "
                             f"only torch {sorted(set(reference_grads) - set(grads))}")
    floor = 1e-3 * max(float(np.abs(ref).max()) for ref in reference_grads.values())
    relative = {name: float(np.abs(grads[name] - ref).max() / max(float(np.abs(ref).max()), floor, 1e-30))
                for name, ref in reference_grads.items()}
    worst = max(relative, key=relative.get)
    logits_max_abs = max(float(np.abs(part - reference[name]).max()) for name, part in named_outputs(logits).items())
    return {"logits_max_abs": logits_max_abs,
            "loss_abs": abs(loss - float(reference["loss"][0])),
            "grad_max_rel": relative[worst], "grad_worst_param": worst, "grad_rel": relative,
            "num_trainable_tensors": len(grads)}


ENCODER_HEADS = ("sequence_classification", "token_classification", "question_answering", "multiple_choice")
NUM_CHOICES = 2
# Tiny configs start new modules at N(0, 0.1) as THUDM's do; at Hugging Face's default 0.02 the multiple-choice
# head (one Linear(H, 1) scoring every choice) leaves the fine-tuned backbone gradients ~1e-3 of the head's, at
# float32 rounding of the largest gradient. 0.1 keeps every tensor's gradient within two orders of the largest.
INITIALIZER_RANGE = 0.1
SHIFT_INVARIANT_LIMIT = 1e-1  # their |g_ms − g_torch| ≤ 1e-4 · the largest gradient (the 1e-3 floor × 1e-1)


def shift_invariant(head: str, num_layers: int) -> tuple:
    """Weights adding the same amount to every logit a softmax compares (the output bias over choices or
    positions; for QA also the last layer's LayerNorm bias, added to every token before the span projection):
    their gradient is zero by construction, so both sides hold rounding noise (MindSpore's softmax
    cross-entropy ~1e-6), compared to the gradient scale instead (SHIFT_INVARIANT_LIMIT)."""
    if head == "multiple_choice":
        return ("classifier.bias",)
    if head == "question_answering":
        return ("qa_outputs.bias", f"encoder.backbone.encoder.layer.{num_layers - 1}.output.LayerNorm.bias")
    return ()


def split_gradients(result: dict, head: str, num_layers: int) -> tuple:
    """(name of the worst relative gradient difference among the other weights, that difference, the worst
    of the shift-invariant weights' or 0)."""
    relative = dict(result["grad_rel"])
    invariant = [relative.pop(name) for name in shift_invariant(head, num_layers) if name in relative]
    worst = max(relative, key=relative.get)
    return worst, relative[worst], max(invariant, default=0.0)


def random_batch(head: str, model_type: str, vocab_size: int, batch_size: int, seq_len: int, num_labels: int,
                 seed: int = 0) -> dict:
    """A padded batch (the last row half padding) with labels for one of the encoder heads: a class per
    row (multiple choice: among NUM_CHOICES sequences), a tag per token (some -100), or answer spans."""
    rng = np.random.default_rng(seed)
    shape = (batch_size, NUM_CHOICES, seq_len) if head == "multiple_choice" else (batch_size, seq_len)
    mask = np.ones(shape, np.int64)
    mask[-1, ..., seq_len // 2:] = 0
    batch = {"input_ids": rng.integers(3, vocab_size, shape).astype(np.int64), "attention_mask": mask}
    if model_type == "bert":
        batch["token_type_ids"] = np.zeros(shape, np.int64)
    if head == "token_classification":
        labels = rng.integers(0, num_labels, shape).astype(np.int64)
        labels[:, 0] = -100
        batch["labels"] = labels
    elif head == "question_answering":
        start = rng.integers(0, seq_len // 2, batch_size).astype(np.int64)
        batch.update(start_positions=start, end_positions=start + rng.integers(0, 3, batch_size))
    else:
        batch["labels"] = rng.integers(0, NUM_CHOICES if head == "multiple_choice" else num_labels,
                                       batch_size).astype(np.int64)
    return batch


REPORT_VARIANTS = {"prefix": dict(mode="prefix"), "prefix+projection": dict(mode="prefix", prefix_projection=True),
                   "prompt": dict(mode="prompt"), "prompt-lstm": dict(mode="prompt", prompt_encoder_type="lstm"),
                   "prompt-mlp": dict(mode="prompt", prompt_encoder_type="mlp"), "finetune": dict(mode="finetune"),
                   "finetune-head-only": dict(mode="finetune", freeze_backbone=True)}


def report_config(model_type: str, config_from: str | None):
    """The backbone config of the report: a real model's sizes, or a tiny one; dropout off."""
    if config_from:
        config = transformers.AutoConfig.from_pretrained(config_from)
    else:
        config = transformers.AutoConfig.for_model(model_type, vocab_size=200, hidden_size=64, num_hidden_layers=2,
                                                   num_attention_heads=4, intermediate_size=128,
                                                   max_position_embeddings=128, initializer_range=INITIALIZER_RANGE)
    config.hidden_dropout_prob = config.attention_probs_dropout_prob = 0.0
    return config


def report_numbers(result: dict, compared: str, head: str, num_layers: int) -> dict:
    """One compared pair's numbers for the table: logits, loss, the worst gradient apart from the
    shift-invariant weights (and its name), and the worst shift-invariant one."""
    measured = result[compared]
    worst, relative, invariant = split_gradients(measured, head, num_layers)
    return {"logits": measured["logits_max_abs"], "loss": measured["loss_abs"], "grad": relative,
            "invariant": invariant, "worst": worst}


def report_row(names: tuple, numbers: dict) -> str:
    """One line of the table: the measured backend against torch (and, on graph, against eager)."""
    measured = numbers[names[3]]
    row = (f"{names[0]:<10} {names[1]:<24} {names[2]:<18} {measured['logits']:>10.2e} {measured['loss']:>9.2e} "
           f"{measured['grad']:>10.2e} {measured['invariant']:>9.2e}")
    if "graph_vs_eager" in numbers:
        versus = numbers["graph_vs_eager"]
        row += f" {versus['logits']:>10.2e} {versus['grad']:>10.2e} {versus['invariant']:>9.2e}"
    return f"{row}  {measured['worst']}"


def report_cases(options) -> tuple:
    """(compare_many's cases, their (model type, head, variant, layers)) for the command line's options."""
    heads = ENCODER_HEADS if options.heads == "all" else options.heads.split(",")
    cases, names = [], []
    for model_type in options.model_types.split(","):
        config = report_config(model_type, options.config_from)
        for head in heads:
            for variant in options.variants.split(","):
                ptuning = PTuningConfig(pre_seq_len=options.pre_seq_len, prefix_hidden_size=128, prefix_dropout=0.0,
                                        classifier_dropout=0.0, **REPORT_VARIANTS[variant])
                batch = random_batch(head, config.model_type, config.vocab_size, options.batch_size,
                                     options.seq_len, ptuning.num_labels)
                cases.append((head, config, ptuning, batch))
                names.append((config.model_type, head, variant, config.num_hidden_layers))
    return cases, names


def main(argv=None) -> int:
    """`scripts/compare_torch.sh`: a parity table, head × backbone × variant, on one backend."""
    parser = argparse.ArgumentParser(description="ms_ptuning vs the PyTorch reference, same weights")
    parser.add_argument("--model_types", default="bert,roberta")
    parser.add_argument("--heads", default="sequence_classification", help=f"comma-separated, or all: {ENCODER_HEADS}")
    parser.add_argument("--variants", default=",".join(REPORT_VARIANTS))
    parser.add_argument("--backend", default="eager", choices=BACKENDS,
                        help="the backend measured; graph is also compared with eager on the same weights")
    parser.add_argument("--config_from", default=None,
                        help="local model directory whose config (sizes) to use instead of the tiny one")
    parser.add_argument("--batch_size", type=int, default=4)
    parser.add_argument("--seq_len", type=int, default=16)
    parser.add_argument("--pre_seq_len", type=int, default=8)
    options = parser.parse_args(argv)
    cases, names = report_cases(options)
    backends = ("eager", "graph") if options.backend == "graph" else ("eager",)
    compared = backends[-1:] + (("graph_vs_eager",) if options.backend == "graph" else ())
    print(f"{'backbone':<10} {'head':<24} {'variant':<18} {'logits':>10} {'loss':>9} {'grad rel':>10} {'shift-inv':>9}"
          + (f" {'vs eager:':>10} {'grad rel':>10} {'shift-inv':>9}" if options.backend == "graph" else "")
          + "  worst gradient")
    worst = {"logits": 0.0, "grad": 0.0, "invariant": 0.0}
    for (model_type, head, variant, layers), result in zip(names, compare_many(cases, backends)):
        numbers = {pair: report_numbers(result, pair, head, layers) for pair in compared}
        print(report_row((model_type, head, variant, options.backend), numbers))
        for pair_numbers in numbers.values():
            worst = {key: max(value, pair_numbers[key]) for key, value in worst.items()}
    passed = worst["logits"] <= 1e-5 and worst["grad"] <= 1e-4 and worst["invariant"] <= SHIFT_INVARIANT_LIMIT
    print(f"worst ({' and '.join(compared)}): logits {worst['logits']:.2e} (limit 1e-5), gradients "
          f"{worst['grad']:.2e} (limit 1e-4), shift-invariant gradients {worst['invariant']:.2e} (limit "
          f"{SHIFT_INVARIANT_LIMIT:g}, relative to the largest gradient's 1e-3): {'PASS' if passed else 'FAIL'}")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())

"""`scripts/check_device.sh [--device_target CPU|GPU|Ascend] [--mixed_precision no|fp16|bf16]`: does ms_ptuning
compute on this device what it computes on CPU and what the PyTorch reference computes?

For tiny BERT, RoBERTa, GPT-2 (graph backend) and DeBERTa-v2 (eager), in prefix, prompt and finetune mode:
- the device's logits and trainable gradients in eval mode against the PyTorch reference on CPU, on the same
  safetensors weights (`ms_ptuning/parity.py`: the reference runs in its own process and writes them);
- 20 optimizer steps of the real Trainer with dropout on (backbone, prefix and classifier dropout 0.1): the
  loss falls and stays finite, and the per-step losses equal those of the same 20 steps run on CPU in a
  separate process to the tolerance below. Dropout masks are a pure function of (seed, step, worker, site),
  so a device whose masks differ from the CPU's shows it at once in these losses;
- GPT-2: greedy generation of four batched prompts, token for token against the reference's.

The frozen backbone computes in the chosen precision (`--mixed_precision`, as `ms_ptuning.run`). In float32
Ascend keeps float32 matmuls (`precision_mode("must_keep_origin_dtype")`, set by `device.target`), GPU keeps
TF32 off (MindSpore's default). One table, the tolerances in its header, a last line `N passed, M failed`;
exit status 1 if any check failed, 2 if the device or a flag is refused.
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass

import numpy as np

from ..cli import report_user_errors
from .jit import DEFAULT_JIT_LEVEL, JIT_LEVEL_HELP, jit_level, set_jit_level
from .target import DEVICE_TARGETS, require_device

MODELS = {"bert": "graph", "roberta": "graph", "gpt2": "graph", "deberta-v2": "eager"}
MODES = ("prefix", "prompt", "finetune")
PRECISIONS = ("no", "fp16", "bf16")
STEPS, DROPOUT = 20, 0.1
GPT2_PROMPTS, MAX_NEW_TOKENS, EOS = [[5, 17, 23, 42, 8], [60, 3], [71, 29, 33, 14, 90, 52, 12, 66], [44]], 8, 2
# (logits max-abs, gradients max relative, training losses max relative vs CPU) per device and precision.
# CPU float32 is MindSpore's ~1e-6 kernel rounding against torch's: 1e-4 relative on most gradients, up to
# ~3e-4 on a tensor whose gradient is small next to the largest (a balanced classifier's bias; README,
# "Comparing with the PyTorch reference"). Another device in float32 sums in another order; fp16/bf16 round
# the backbone's matmul inputs to 11 / 8 significant bits.
TOLERANCES = {("CPU", "no"): (1e-5, 3e-4, 1e-5), ("GPU", "no"): (1e-4, 1e-3, 1e-3),
              ("Ascend", "no"): (1e-4, 1e-3, 1e-3)}
LOW_PRECISION_TOLERANCES = {"fp16": (5e-2, 1e-1, 2e-2), "bf16": (2e-1, 3e-1, 1e-1)}


@dataclass
class Case:
    model_type: str
    mode: str

    @property
    def head(self) -> str:
        return "causal_lm" if self.model_type == "gpt2" else "sequence_classification"

    @property
    def backend(self) -> str:
        return MODELS[self.model_type]

    @property
    def name(self) -> str:
        return f"{self.model_type}/{self.mode}"


def tolerances(device: str, precision: str) -> tuple:
    return TOLERANCES[(device, precision)] if precision == "no" else LOW_PRECISION_TOLERANCES[precision]


def backbone_config(model_type: str, dropout: float = 0.0):
    """A 2-layer, hidden-32 backbone at initializer range 0.1 (THUDM's new modules start there; a random
    GPT-2 at 0.02 would greedily repeat one token)."""
    import transformers

    if model_type == "gpt2":
        return transformers.GPT2Config(vocab_size=97, n_embd=32, n_layer=2, n_head=2, n_positions=64,
                                       resid_pdrop=dropout, embd_pdrop=dropout, attn_pdrop=dropout,
                                       initializer_range=0.1)
    return transformers.AutoConfig.for_model(model_type, vocab_size=97, hidden_size=32, num_hidden_layers=2,
                                             num_attention_heads=2, intermediate_size=37, max_position_embeddings=64,
                                             hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout,
                                             initializer_range=0.1)


def ptuning_config(mode: str, dropout: float = 0.0):
    from ..config import PTuningConfig

    return PTuningConfig(mode=mode, pre_seq_len=4, prefix_dropout=dropout, classifier_dropout=dropout)


def eval_batch(case: Case) -> dict:
    """Four padded rows with labels (LM: next tokens, padding -100)."""
    rng = np.random.default_rng(0)
    mask = np.ones((4, 12), np.int64)
    mask[-1, 7:] = 0
    ids = rng.integers(3, 97, (4, 12)).astype(np.int64)
    batch = {"input_ids": ids, "attention_mask": mask}
    if case.model_type == "bert":
        batch["token_type_ids"] = np.zeros_like(ids)
    batch["labels"] = np.where(mask == 1, ids, -100) if case.head == "causal_lm" else rng.integers(0, 2, 4)
    return batch


def parse(argv=None):
    parser = argparse.ArgumentParser(prog="check_device", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device_target", default="CPU", choices=DEVICE_TARGETS)
    parser.add_argument("--mixed_precision", default="no", choices=PRECISIONS)
    parser.add_argument("--jit_level", default=DEFAULT_JIT_LEVEL, help=JIT_LEVEL_HELP)
    parser.add_argument("--models", default=",".join(MODELS), help=f"comma-separated, from {', '.join(MODELS)}")
    parser.add_argument("--modes", default=",".join(MODES), help=f"comma-separated, from {', '.join(MODES)}")
    parser.add_argument("--cpu_side", metavar="FILE", help=argparse.SUPPRESS)  # the CPU run's losses go to FILE
    options = parser.parse_args(argv)
    for flag, known in (("models", MODELS), ("modes", MODES)):
        values = getattr(options, flag).split(",")
        unknown = [value for value in values if value not in known]
        if unknown:
            parser.error(f"--{flag}: unknown {', '.join(unknown)}; choose from {', '.join(known)}")
        setattr(options, flag, values)
    return options


def main(argv=None) -> int:
    options = parse(argv)
    return report_user_errors("check_device", check if options.cpu_side is None else cpu_side, options)


def compute_dtype(options):
    from ..training.precision import mixed_precision_dtype

    return mixed_precision_dtype(options.mixed_precision)


def check(options) -> int:
    """The whole check on `options.device_target`; prints the table, returns the exit status."""
    require_device(options.device_target)  # before anything heavy: one line if the device is not there
    set_jit_level(options.jit_level, options.device_target)
    dtype = compute_dtype(options)  # refuses bf16 where MindSpore has no kernels (CPU)
    cases = [Case(model_type, mode) for model_type in options.models for mode in options.modes]
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="ms_ptuning_check_device_") as root:
        reference = start_reference(root, cases)
        cpu_losses_file = os.path.join(root, "cpu_losses.npz")
        cpu = start_cpu_side(options, cpu_losses_file)
        rows = [row for case in cases for row in training_rows(case, dtype, root)]
        wait(reference, "the PyTorch reference", os.path.join(root, "reference.log"))
        rows += [row for case in cases for row in reference_rows(case, dtype, options, root)]
        wait(cpu, "the CPU run", os.path.join(root, "cpu_side.log"))
        rows = compare_with_cpu(rows, np.load(cpu_losses_file), options)
    order = {case.name: index for index, case in enumerate(cases)}
    return print_table(sorted(rows, key=lambda row: order[row["case"]]), options, time.time() - started)


def start_reference(root: str, cases: list) -> subprocess.Popen:
    """The torch reference (one process, CPU) initialising every case's weights and computing its outputs."""
    from ..parity import reference_command, write_case

    workdirs = []
    for case in cases:
        workdir = os.path.join(root, case.name.replace("/", "_"))
        os.mkdir(workdir)
        generate = ({"prompts": GPT2_PROMPTS, "max_new_tokens": MAX_NEW_TOKENS, "eos_token_id": EOS}
                    if case.head == "causal_lm" else None)
        write_case(workdir, case.head, backbone_config(case.model_type), ptuning_config(case.mode), eval_batch(case),
                   0, generate)
        workdirs.append(workdir)
    argv, env = reference_command(workdirs)
    with open(os.path.join(root, "reference.log"), "w") as log:
        return subprocess.Popen(argv, env=env, stdout=log, stderr=log)


def start_cpu_side(options, losses_file: str) -> subprocess.Popen:
    """The same 20-step runs on CPU in another process (in the chosen precision if CPU has its kernels)."""
    precision = options.mixed_precision if options.mixed_precision != "bf16" else "no"
    argv = [sys.executable, "-m", "ms_ptuning.device.check", "--cpu_side", losses_file, "--mixed_precision",
            precision, "--jit_level", "O0", "--models", ",".join(options.models), "--modes", ",".join(options.modes)]
    with open(os.path.join(os.path.dirname(losses_file), "cpu_side.log"), "w") as log:
        return subprocess.Popen(argv, stdout=log, stderr=log)


def wait(process: subprocess.Popen, what: str, log_path: str) -> None:
    if process.wait():
        with open(log_path) as log:
            raise RuntimeError(f"{what} failed (exit {process.returncode}):\n{log.read()[-4000:]}")


def cpu_side(options) -> int:
    """`--cpu_side FILE`: the training runs on CPU, their per-step losses saved to FILE (npz, by case)."""
    require_device("CPU")
    set_jit_level(options.jit_level, "CPU")
    dtype = compute_dtype(options)
    with tempfile.TemporaryDirectory(prefix="ms_ptuning_check_cpu_") as root:
        losses = {Case(m, mode).name: train_losses(Case(m, mode), dtype, root)
                  for m in options.models for mode in options.modes}
    np.savez(options.cpu_side, **losses)
    return 0


def build(case: Case, dtype, dropout: float = 0.0):
    """The case's head on its backend over a seeded random backbone."""
    from ..backbones import build_backbone
    from ..backend import seed_everything
    from ..execution import choose_backend
    from ..models import HEADS

    seed_everything(0)
    backend = choose_backend(case.backend, case.model_type)
    backbone = backend.backbone(build_backbone(backbone_config(case.model_type, dropout)))
    return HEADS[case.head](backbone, ptuning_config(case.mode, dropout), dtype), backend


def train_losses(case: Case, dtype, root: str) -> np.ndarray:
    """Per-step losses of 20 Trainer steps with dropout on (seeded: the same on any device)."""
    from ..parity_training import trainer_run, training_data

    model, backend = build(case, dtype, DROPOUT)
    settings = dict(learning_rate=1e-2 if case.mode != "finetune" else 1e-3, per_device_train_batch_size=4,
                    gradient_accumulation_steps=1, max_grad_norm=1.0, seed=7, lr_scheduler_type="constant")
    columns = training_data(case.head, backbone_config(case.model_type), size=8, seq_len=12)
    output_dir = os.path.join(root, "train_" + case.name.replace("/", "_"))
    losses, _, _ = trainer_run(model, columns, settings, STEPS, output_dir, backend.steps)
    return losses


def training_rows(case: Case, dtype, root: str) -> list:
    """The loss falls and stays finite; the losses themselves are compared with the CPU run's later."""
    losses = train_losses(case, dtype, root)
    first, last = float(np.mean(losses[:5])), float(np.mean(losses[-5:]))
    falls = bool(np.all(np.isfinite(losses))) and last < first
    return [{"case": case.name, "check": f"{STEPS} steps, dropout {DROPOUT}: loss falls",
             "value": f"{first:.4f} → {last:.4f}", "limit": "finite, falls", "passed": falls},
            {"case": case.name, "check": f"{STEPS} steps: losses vs CPU run", "losses": losses}]


def reference_model(case: Case, dtype, workdir: str):
    """The case's model holding the reference's initial weights (rounded to `dtype` where the backbone keeps
    its frozen weights in it, as a run loading a checkpoint does)."""
    from mindspore import Tensor, ops
    from safetensors.numpy import load_file

    from ..weights import named_weights

    model, _ = build(case, dtype)
    arrays, weights = load_file(os.path.join(workdir, "weights.safetensors")), named_weights(model)
    if set(arrays) != set(weights):
        raise RuntimeError(f"{case.name}: the reference's weights differ in names from this model's: "
                           f"{sorted(set(arrays) ^ set(weights))[:5]}")
    for name, param in weights.items():
        ops.assign(param, Tensor(np.ascontiguousarray(arrays[name]), dtype=param.dtype))
    return model


def reference_rows(case: Case, dtype, options, root: str) -> list:
    """Logits and gradients (and GPT-2's greedy tokens) against the reference's."""
    import json

    from safetensors.numpy import load_file

    from ..generation import GenerationConfig, generate
    from ..parity import forward_and_grads, output_differences

    workdir = os.path.join(root, case.name.replace("/", "_"))
    model = reference_model(case, dtype, workdir)
    reference = load_file(os.path.join(workdir, "reference_outputs.safetensors"))
    found = output_differences(forward_and_grads(model, eval_batch(case), case.backend), reference)
    logits_limit, grad_limit, _ = tolerances(options.device_target, options.mixed_precision)
    rows = [{"case": case.name, "check": "logits vs torch (max abs)", "value": f"{found['logits_max_abs']:.2e}",
             "limit": f"{logits_limit:.0e}", "passed": found["logits_max_abs"] <= logits_limit},
            {"case": case.name, "check": "gradients vs torch (max rel)", "value": f"{found['grad_max_rel']:.2e}",
             "limit": f"{grad_limit:.0e}", "passed": found["grad_max_rel"] <= grad_limit}]
    if case.head == "causal_lm":
        with open(os.path.join(workdir, "reference_generations.json")) as handle:
            expected = json.load(handle)
        tokens = generate(model, GPT2_PROMPTS, GenerationConfig(max_new_tokens=MAX_NEW_TOKENS, eos_token_id=EOS,
                                                                batch_size=len(GPT2_PROMPTS)))
        same = sum(a == b for a, b in zip(tokens, expected))
        rows.append({"case": case.name, "check": "greedy tokens vs torch", "value": f"{same}/{len(expected)} rows",
                     "limit": "all equal", "passed": tokens == expected})
    return rows


def compare_with_cpu(rows: list, cpu_losses, options) -> list:
    """Fill in the 'losses vs CPU run' rows: largest relative per-step loss difference."""
    limit = tolerances(options.device_target, options.mixed_precision)[2]
    for row in rows:
        if "losses" in row:
            expected = cpu_losses[row["case"]]
            relative = float(np.max(np.abs(row.pop("losses") - expected) / np.maximum(np.abs(expected), 1e-6)))
            row.update(value=f"{relative:.2e}", limit=f"{limit:.0e}", passed=relative <= limit)
    return rows


def print_table(rows: list, options, seconds: float) -> int:
    import mindspore

    logits, grads, losses = tolerances(options.device_target, options.mixed_precision)
    print(f"check_device: ms_ptuning on {options.device_target} (MindSpore {mindspore.__version__}), precision "
          f"{options.mixed_precision}, jit level {jit_level()}; against the PyTorch reference on CPU (same "
          f"safetensors weights) and the same training run on CPU")
    print(f"tolerances for {options.device_target}/{options.mixed_precision}: logits max abs {logits:.0e}, "
          f"gradients max relative {grads:.0e}, training losses vs CPU max relative {losses:.0e}; "
          f"GPT-2 greedy tokens equal")
    width = max(len(row["check"]) for row in rows)
    print(f"{'case':<20} {'check':<{width}} {'measured':>18} {'limit':>16}  result")
    for row in rows:
        print(f"{row['case']:<20} {row['check']:<{width}} {row['value']:>18} {row['limit']:>16}  "
              f"{'pass' if row['passed'] else 'FAIL'}")
    failed = sum(not row["passed"] for row in rows)
    print(f"{len(rows) - failed} passed, {failed} failed ({seconds:.0f} s)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

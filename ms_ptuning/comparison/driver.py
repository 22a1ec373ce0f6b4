"""Train a task with ms_ptuning and with the PyTorch reference over several seeds and compare:
`bash scripts/compare_torch.sh --task TASK --seeds 11,12,13 --output_dir DIR [python -m ms_ptuning.run flags]`.

For each seed, two processes one after the other: ms_ptuning's (`ms_side`: exactly `ms_ptuning.run`, on the
backend `--backend` picks, which first writes the encoded splits, the new modules' initial weights and the
settings to DIR/exchange/seed-S) and the torch reference's (`torch_side`: real `transformers.Trainer` over the
reference heads, THUDM's recipe, from those). Each run's wall time and peak RSS are measured from outside.
DIR/ms/seed-S and DIR/torch/seed-S are ordinary run directories (`ms-ptuning compare` reads them again);
DIR/comparison.json and DIR/comparison.png hold the table and the curves.

Dropout masks differ between the sides (each draws its own), so with dropout on the runs agree only
statistically: the table says whether the difference of the means lies within the seeds' spread
(`report.RULE`). `--dropout 0` (hidden and attention dropout, prefix and classifier dropout) with
`--compare_steps N` is the exact check: N steps per seed, and each step's train loss must agree within
`--tolerance` (relative) between the sides.
"""

import argparse
import json
import os
import subprocess
import sys
import time

from . import report
from .runs import load_run

DROPOUT_NOTE = ("dropout masks differ between the sides: each draws its own, so with dropout on the runs agree "
                "statistically, not step by step")


def parse(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", default="11", help="comma-separated seeds, one run per side each (default 11)")
    parser.add_argument("--output_dir", required=True, help="the comparison's directory")
    parser.add_argument("--dropout", type=float, default=None,
                        help="sets --hidden_dropout_prob and --attention_probs_dropout_prob (0: no dropout anywhere)")
    parser.add_argument("--compare_steps", type=int, default=None,
                        help="the exact check: train N steps (logging every step) and compare each step's loss; "
                             "needs --dropout 0")
    parser.add_argument("--tolerance", type=float, default=1e-3, help="largest relative loss difference per step")
    options, run_argv = parser.parse_known_args(argv)
    options.seeds = [int(seed) for seed in options.seeds.split(",") if seed.strip()]
    clashing = [flag for flag in ("--seed", "--hidden_dropout_prob", "--attention_probs_dropout_prob")
                if any(a == flag or a.startswith(flag + "=") for a in run_argv)
                and (flag == "--seed" or options.dropout is not None)]
    if clashing:
        parser.error(f"{', '.join(clashing)}: set by the comparison (--seeds, --dropout)")
    if options.compare_steps is not None and options.dropout != 0:
        parser.error("--compare_steps is the exact check and needs --dropout 0 (dropout masks differ between sides)")
    return options, run_argv


def side_argv(options, run_argv: list, seed: int, output_dir: str) -> list:
    """The run flags of one seed: the comparison's defaults, the user's flags, then what it must set."""
    defaults = []
    if options.compare_steps is not None:
        defaults = ["--eval_strategy", "no", "--save_strategy", "no"]
    forced = ["--seed", str(seed), "--output_dir", output_dir, "--overwrite_output_dir", "True"]
    if options.dropout is not None:
        forced += ["--hidden_dropout_prob", str(options.dropout), "--attention_probs_dropout_prob", str(options.dropout)]
    if options.compare_steps is not None:
        forced += ["--max_steps", str(options.compare_steps), "--logging_steps", "1"]
    return defaults + run_argv + forced


def measured(argv: list, log_path: str, run_dir: str) -> dict:
    """Run a process with its output in log_path; its wall time and peak RSS go to run_dir/run_info.json."""
    started = time.time()
    with open(log_path, "w") as log:
        process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    info = {"wall_seconds": time.time() - started, "peak_rss_mb": usage.ru_maxrss / 1024, "command": argv}
    if process.returncode:
        with open(log_path) as log:
            tail = log.read()[-3000:]
        raise RuntimeError(f"{' '.join(argv[:4])} failed (exit {process.returncode}); the end of {log_path}:\n{tail}")
    with open(os.path.join(run_dir, "run_info.json"), "w") as handle:
        json.dump(info, handle, indent=2)
    return info


def run_seed(options, run_argv: list, seed: int) -> tuple:
    """Both sides of one seed → (ms run, torch run)."""
    root = options.output_dir
    exchange_dir, ms_dir, torch_dir = (os.path.join(root, part, f"seed-{seed}") for part in ("exchange", "ms", "torch"))
    for directory in (exchange_dir, os.path.dirname(ms_dir), torch_dir):
        os.makedirs(directory, exist_ok=True)
    python = sys.executable
    ms = measured([python, "-m", "ms_ptuning.comparison.ms_side", exchange_dir,
                   *side_argv(options, run_argv, seed, ms_dir)], os.path.join(root, f"ms-seed-{seed}.log"), ms_dir)
    print(f"  seed {seed}: ms_ptuning {ms['wall_seconds']:.0f} s", flush=True)
    reference = measured([python, "-m", "ms_ptuning.comparison.torch_side", exchange_dir, torch_dir],
                         os.path.join(root, f"torch-seed-{seed}.log"), torch_dir)
    print(f"  seed {seed}: torch {reference['wall_seconds']:.0f} s", flush=True)
    return load_run(ms_dir, name=f"seed {seed}"), load_run(torch_dir, name=f"seed {seed}")


def step_agreement(ms_run: dict, torch_run: dict, steps: int) -> dict:
    """The exact check of one seed: each of the first `steps` steps' train loss, relative difference."""
    ms_losses = [loss for _, loss in ms_run["train"]][:steps]
    torch_losses = torch_run["step_losses"][:steps]
    if len(ms_losses) != len(torch_losses):
        raise RuntimeError(f"the sides logged {len(ms_losses)} and {len(torch_losses)} step losses")
    relative = [abs(a - b) / abs(b) for a, b in zip(ms_losses, torch_losses)]
    worst = max(range(len(relative)), key=relative.__getitem__)
    return {"steps": len(relative), "max_relative": relative[worst], "worst_step": worst + 1,
            "first_loss": torch_losses[0], "last_loss": torch_losses[-1], "ms_losses": ms_losses,
            "torch_losses": torch_losses}


def main(argv=None) -> int:
    options, run_argv = parse(argv)
    os.makedirs(options.output_dir, exist_ok=True)
    print(f"[compare] {len(options.seeds)} seed(s), ms_ptuning then torch per seed; {DROPOUT_NOTE}", flush=True)
    started, clock = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), time.time()
    pairs = [run_seed(options, run_argv, seed) for seed in options.seeds]
    groups = {"ms_ptuning": [ms for ms, _ in pairs], "torch": [ref for _, ref in pairs]}
    stats = report.summary(groups)
    content = {"run_flags": run_argv, "seeds": options.seeds, "dropout": options.dropout, "note": DROPOUT_NOTE,
               "started": started, "seconds": time.time() - clock, "load_average": os.getloadavg()[0], **stats}
    print(report.table(groups, stats))
    status = 0
    if options.compare_steps is not None:
        checks = {seed: step_agreement(ms, ref, options.compare_steps) for seed, (ms, ref) in zip(options.seeds, pairs)}
        worst = max(check["max_relative"] for check in checks.values())
        passed = worst <= options.tolerance
        content["exact_check"] = {"tolerance": options.tolerance, "max_relative": worst, "passed": passed,
                                  "seeds": checks}
        for seed, check in checks.items():
            print(f"exact check, seed {seed}: {check['steps']} steps, loss {check['first_loss']:.4f} → "
                  f"{check['last_loss']:.4f}, largest relative difference {check['max_relative']:.2e} "
                  f"(step {check['worst_step']})")
        print(f"exact check: worst {worst:.2e}, tolerance {options.tolerance:g}: {'PASS' if passed else 'FAIL'}")
        status = 0 if passed else 1
    report.write_json(os.path.join(options.output_dir, "comparison.json"), content)
    report.plot(groups, os.path.join(options.output_dir, "comparison.png"), title=" ".join(run_argv)[:120])
    print(f"wrote {os.path.join(options.output_dir, 'comparison.json')} and comparison.png; {DROPOUT_NOTE}")
    return status


if __name__ == "__main__":
    sys.exit(main())

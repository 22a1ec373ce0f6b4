"""Read finished runs from their output directories: ms_ptuning's (`results.json`, `metrics.jsonl`, checkpoints'
`trainer_state.json`) and any Hugging Face `transformers.Trainer` output directory, as THUDM's run.py leaves it
(`trainer_state.json` from `save_state()`, `all_results.json` / `eval_results.json` from `save_metrics()`).

A run is a dict: `name`, `kind`, `metric` (the dev metric, `eval_...`), `train` [(step, loss)], `dev`
[(step, metric)], `dev_loss` [(step, eval_loss)], `best_dev`, `best_step`, `final_dev`, `test` {name: value at the best dev step}, `steps`,
`train_seconds`, `seconds_per_step`, and, when the comparison measured them (`run_info.json`),
`wall_seconds` and `peak_rss_mb`. Needs no mindnlp and no torch.
"""

import glob
import json
import os

RUN_INFO = "run_info.json"
# keys of evaluation records that are not metrics
NOT_METRICS = ("loss", "runtime", "samples_per_second", "steps_per_second", "epoch", "step", "model_preparation_time")
LOWER_IS_BETTER = ("loss", "mse", "mae", "rmse", "perplexity", "error")


def read_json(path: str):
    with open(path) as handle:
        return json.load(handle)


def is_run(directory: str) -> bool:
    return any(os.path.exists(os.path.join(directory, name))
               for name in ("results.json", "trainer_state.json", "all_results.json", "metrics.jsonl"))


def log_history(directory: str) -> list:
    """The run's log records: metrics.jsonl (ms_ptuning), else trainer_state.json in the directory (what
    `Trainer.save_state()` writes), else that of its latest checkpoint."""
    metrics = os.path.join(directory, "metrics.jsonl")
    if os.path.exists(metrics):
        with open(metrics) as handle:
            return [json.loads(line) for line in handle if line.strip()]
    states = [os.path.join(directory, "trainer_state.json")]
    checkpoints = glob.glob(os.path.join(directory, "checkpoint-*", "trainer_state.json"))
    states += sorted(checkpoints, key=lambda path: int(path.split("checkpoint-")[-1].split(os.sep)[0]), reverse=True)
    for path in states:
        if os.path.exists(path):
            return read_json(path)["log_history"]
    raise FileNotFoundError(f"{directory}: no metrics.jsonl and no trainer_state.json (is it a training run's "
                            "output directory?)")


def dev_metric(history: list, results: dict, metric: str | None) -> str | None:
    """The dev metric: the one asked for, else the one the run selected its best by (`best_eval_X` in its
    results), else the first evaluation metric it logged."""
    if metric:
        return metric if metric.startswith("eval_") else f"eval_{metric}"
    for key in results:
        if key.startswith("best_eval_"):
            return key[len("best_"):]
    for record in [*history, results]:
        for key in record:
            if key.startswith("eval_") and key[len("eval_"):] not in NOT_METRICS:
                return key
    return None


def greater_is_better(metric: str) -> bool:
    return not any(word in metric for word in LOWER_IS_BETTER)


def load_run(directory: str, metric: str | None = None, name: str | None = None) -> dict:
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"{directory}: no such run directory")
    history = log_history(directory)
    ours = os.path.exists(os.path.join(directory, "results.json"))
    results = read_json(os.path.join(directory, "results.json")) if ours else {}
    for file in ("all_results.json", "eval_results.json"):  # HF's save_metrics files
        path = os.path.join(directory, file)
        if not ours and os.path.exists(path):
            results = {**read_json(path), **results}
    metric = dev_metric(history, results, metric)
    train = [(r["step"], r["loss"]) for r in history if "loss" in r and "step" in r]
    dev = [(r["step"], r[metric]) for r in history if metric and metric in r]
    dev_loss = [(r["step"], r["eval_loss"]) for r in history if "eval_loss" in r and "step" in r]
    run = {"name": name or directory, "directory": directory, "kind": "ms_ptuning" if ours else "transformers",
           "metric": metric, "train": train, "dev": dev, "dev_loss": dev_loss}
    # the best is chosen among the evaluations during training: those logged before the run's summary record
    # (train_runtime); a Trainer's evaluate() after training logs after it
    summary = next((index for index, r in enumerate(history) if "train_runtime" in r), len(history))
    during = [(r["step"], r[metric]) for r in history[:summary] if metric and metric in r]
    if during:
        pick = max if greater_is_better(metric) else min
        best = pick(value for _, value in during)
        best_step = next(step for step, value in during if value == best)  # the first of equal values
        run.update(best_dev=results.get(f"best_{metric}", best), best_step=results.get("best_step", best_step),
                   final_dev=results.get(metric, dev[-1][1]))
    else:
        run.update(best_dev=None, best_step=None, final_dev=results.get(metric))
    run["test"] = {key: value for key, value in results.items() if is_test_metric(key, value)}
    finished = [r for r in history if "train_runtime" in r]
    steps = results.get("global_step") or (finished[-1]["step"] if finished else None)
    seconds = results.get("train_runtime") or (finished[-1]["train_runtime"] if finished else None)
    run.update(steps=steps, train_seconds=seconds, seconds_per_step=seconds / steps if seconds and steps else None)
    if not dev and run["final_dev"] is not None and steps:  # scored once, after training (not in the log)
        run["dev"] = [(steps, run["final_dev"])]
    info_path = os.path.join(directory, RUN_INFO)
    info = read_json(info_path) if os.path.exists(info_path) else {}
    run.update(wall_seconds=info.get("wall_seconds"), peak_rss_mb=info.get("peak_rss_mb"))
    losses_path = os.path.join(directory, "step_losses.json")  # the comparison's torch side: unrounded losses
    if os.path.exists(losses_path):
        run["step_losses"] = read_json(losses_path)["step_loss"]
    return run


def is_test_metric(key: str, value) -> bool:
    """Metrics of test splits (`test_f1`, `test_wsj_f1`, HF's `predict_...`), not their timings."""
    if not key.startswith(("test", "predict_")) or isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return not key.endswith(("_runtime", "_samples_per_second", "_steps_per_second", "_loss"))


def load_group(directory: str, metric: str | None = None) -> list:
    """A run directory, or a directory of runs (e.g. one per seed): its runs."""
    if is_run(directory):
        return [load_run(directory, metric)]
    children = sorted(os.path.join(directory, child) for child in os.listdir(directory)) if os.path.isdir(directory) else []
    runs = [load_run(child, metric) for child in children if os.path.isdir(child) and is_run(child)]
    if not runs:
        raise FileNotFoundError(f"{directory}: neither a run directory (results.json, metrics.jsonl, "
                                "trainer_state.json or all_results.json) nor a directory of runs")
    return runs

"""Loss and metric curves from metrics.jsonl, as one PNG."""

import json

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def read_metrics(path: str) -> list:
    with open(path) as handle:
        return [json.loads(line) for line in handle if line.strip()]


def plot_curves(metrics_path: str, png_path: str, metric: str | None = None) -> None:
    records = read_metrics(metrics_path)
    train = [r for r in records if "loss" in r]
    evals = [r for r in records if any(k.startswith("eval_") for k in r)]
    figure, (loss_axis, metric_axis) = plt.subplots(1, 2, figsize=(10, 4))
    loss_axis.plot([r["step"] for r in train], [r["loss"] for r in train], label="train loss")
    if evals and "eval_loss" in evals[0]:
        loss_axis.plot([r["step"] for r in evals], [r["eval_loss"] for r in evals], "o-", label="eval loss")
    loss_axis.set_xlabel("optimizer step")
    loss_axis.set_title("loss")
    loss_axis.legend()
    metric = metric or next((k for k in (evals[0] if evals else {}) if k.startswith("eval_") and k != "eval_loss"), None)
    if metric:
        metric_axis.plot([r["step"] for r in evals if metric in r], [r[metric] for r in evals if metric in r], "o-")
        metric_axis.set_title(metric)
        metric_axis.set_xlabel("optimizer step")
    else:
        metric_axis.set_axis_off()
    figure.tight_layout()
    figure.savefig(png_path, dpi=100)
    plt.close(figure)

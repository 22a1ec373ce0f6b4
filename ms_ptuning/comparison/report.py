"""Tables, statistics and plots over groups of runs (`runs.load_run` dicts), e.g. one group per side with one
run per seed.

The rule for "the sides agree": the difference of the two groups' means lies within the seeds' spread,
|Δ| ≤ 2·√(σ²_a/n_a + σ²_b/n_b), σ the sample standard deviation over a group's seeds (about a 95% interval
for the difference of two means). It needs at least two runs in each group.
"""

import json
import math

import numpy as np

# what each row of the table shows: (key in the run, heading, format)
COLUMNS = (("best_dev", "best dev", "{:.4f}"), ("final_dev", "dev at end", "{:.4f}"), ("steps", "steps", "{:.0f}"),
           ("seconds_per_step", "s/step", "{:.3f}"), ("wall_seconds", "wall s", "{:.0f}"),
           ("peak_rss_mb", "peak RSS MB", "{:.0f}"))
RULE = "|Δ| ≤ 2·√(σ²_a/n_a + σ²_b/n_b) (σ: sample std over seeds)"


def mean_std(values: list) -> tuple:
    values = [v for v in values if v is not None]
    if not values:
        return None, None
    return float(np.mean(values)), float(np.std(values, ddof=1)) if len(values) > 1 else None


def quantities(runs: list) -> list:
    """Every number a row shows: the COLUMNS, then each test metric the runs report."""
    tests = sorted({key for run in runs for key in run["test"]})
    return [key for key, _, _ in COLUMNS] + [f"test:{key}" for key in tests]


def value_of(run: dict, quantity: str):
    return run["test"].get(quantity[len("test:"):]) if quantity.startswith("test:") else run.get(quantity)


SCORES = ("best_dev", "final_dev")  # and every test metric: the quantities the spread rule judges


def is_score(quantity: str) -> bool:
    return quantity in SCORES or quantity.startswith("test:")


def difference(a: list, b: list, quantity: str) -> dict:
    """Mean of b − mean of a, and for scores whether it lies within the seeds' spread (RULE); steps, times and
    memory get the difference only."""
    (mean_a, std_a), (mean_b, std_b) = (mean_std([value_of(run, quantity) for run in runs]) for runs in (a, b))
    if mean_a is None or mean_b is None:
        return {"delta": None, "bound": None, "within": None}
    delta = mean_b - mean_a
    if std_a is None or std_b is None or not is_score(quantity):  # one run on a side: no spread to judge by
        return {"delta": delta, "bound": None, "within": None}
    bound = 2 * math.sqrt(std_a ** 2 / len(a) + std_b ** 2 / len(b))
    return {"delta": delta, "bound": bound, "within": abs(delta) <= bound}


def summary(groups: dict) -> dict:
    """{group: {"runs": [...per run numbers...], "mean"/"std": {quantity: ...}}}, and with two groups their
    differences (second − first) per quantity."""
    all_runs = [run for runs in groups.values() for run in runs]
    names = quantities(all_runs)
    result = {"rule": RULE, "groups": {}}
    for group, runs in groups.items():
        stats = {quantity: mean_std([value_of(run, quantity) for run in runs]) for quantity in names}
        result["groups"][group] = {
            "metric": runs[0]["metric"],
            "runs": [{"name": run["name"], **{q: value_of(run, q) for q in names}} for run in runs],
            "mean": {q: s[0] for q, s in stats.items()}, "std": {q: s[1] for q, s in stats.items()}}
    if len(groups) == 2:
        first, second = groups.values()
        result["differences"] = {quantity: difference(first, second, quantity) for quantity in names}
    return result


def formatted(value, form: str) -> str:
    return "-" if value is None else form.format(value)


def table(groups: dict, stats: dict) -> str:
    """Per run and per group (mean ± std) rows; with two groups, a Δ row and whether it is within the spread."""
    all_runs = [run for runs in groups.values() for run in runs]
    names = quantities(all_runs)
    forms = {key: form for key, _, form in COLUMNS}
    headings = [heading for _, heading, _ in COLUMNS] + [q[len("test:"):] for q in names[len(COLUMNS):]]
    width = max(12, *(len(h) for h in headings))
    label_width = max(24, *(len(run["name"]) + 2 for run in all_runs))
    lines = [f"{'run':<{label_width}}" + "".join(f"{h:>{width + 2}}" for h in headings)]
    for group, runs in groups.items():
        metric = runs[0]["metric"]
        lines.append(f"{group} (dev metric {metric})")
        for run in runs:
            lines.append(f"  {run['name']:<{label_width - 2}}" + "".join(
                f"{formatted(value_of(run, q), forms.get(q, '{:.4f}')):>{width + 2}}" for q in names))
        mean, std = stats["groups"][group]["mean"], stats["groups"][group]["std"]
        cells = []
        for q in names:
            form = forms.get(q, "{:.4f}")
            cell = formatted(mean[q], form) + ("" if std[q] is None else "±" + formatted(std[q], form))
            cells.append(f"{cell:>{width + 2}}")
        lines.append(f"  {'mean ± std':<{label_width - 2}}" + "".join(cells))
    if "differences" in stats:
        first, second = groups
        lines.append(f"Δ = {second} − {first}; within spread: {RULE}")
        cells = []
        for q in names:
            d = stats["differences"][q]
            verdict = "" if d["within"] is None else (" ok" if d["within"] else " OUT")
            cells.append(f"{formatted(d['delta'], '{:+.4f}') + verdict:>{width + 2}}")
        lines.append(f"  {'Δ (within?)':<{label_width - 2}}" + "".join(cells))
        cells = [f"{formatted(stats['differences'][q]['bound'], '{:.4f}'):>{width + 2}}" for q in names]
        lines.append(f"  {'bound 2·√(σ²/n+σ²/n)':<{label_width - 2}}" + "".join(cells))
    return "\n".join(lines)


def mean_curve(curves: list) -> tuple:
    """The mean over runs at the steps every run has."""
    common = sorted(set.intersection(*(set(step for step, _ in curve) for curve in curves))) if curves else []
    lookups = [dict(curve) for curve in curves]
    return common, [float(np.mean([lookup[step] for lookup in lookups])) for step in common]


def plot(groups: dict, path: str, title: str = "") -> None:
    """Train loss and dev metric over optimizer steps: each run thin, each group's mean bold."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (loss_axis, metric_axis) = plt.subplots(1, 2, figsize=(12, 4.5))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for index, (group, runs) in enumerate(groups.items()):
        color = colors[index % len(colors)]
        for axis, key in ((loss_axis, "train"), (metric_axis, "dev")):
            curves = [run[key] for run in runs if run[key]]
            for curve in curves:
                axis.plot(*zip(*curve), color=color, linewidth=0.6, alpha=0.5)
            steps, mean = mean_curve(curves)
            if steps:
                axis.plot(steps, mean, color=color, linewidth=2.2, label=f"{group} (mean of {len(curves)})",
                          marker="o" if key == "dev" else None, markersize=3)
    metrics = sorted({run["metric"] for runs in groups.values() for run in runs if run["metric"]})
    loss_axis.set_title("train loss")
    metric_axis.set_title("dev " + ", ".join(metrics))
    for axis in (loss_axis, metric_axis):
        axis.set_xlabel("optimizer step")
        if axis.lines:
            axis.legend()
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def write_json(path: str, content: dict) -> None:
    with open(path, "w") as handle:
        json.dump(content, handle, indent=2)

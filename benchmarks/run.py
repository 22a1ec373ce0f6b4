"""Speed and memory of ms_ptuning against the PyTorch reference, measured in one run.

`python -m benchmarks.run [--cases ...] [--steps 5] [--warmup 2] [--threads 2] [--output_dir benchmarks/out]`

Both sides run in their own long-lived worker process with the same thread count, config and batch. Steps
alternate between them (ms, torch, ms, torch, ...) so both see the same machine load; after the warm-up steps
the median of the timed steps is reported. Peak RSS is each worker's own maximum resident set.
Writes `results.md` and `results.json` to the output directory and prints the table.
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time

from .configs import CASES, DEFAULT_CASES

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class Worker:
    def __init__(self, side: str, case: str, threads: int):
        env = dict(os.environ, OMP_NUM_THREADS=str(threads), PYTHONUNBUFFERED="1")
        self.side = side
        self.process = subprocess.Popen([sys.executable, "-m", "benchmarks.worker", side, case, str(threads)],
                                        cwd=ROOT, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        stderr=subprocess.DEVNULL, text=True)
        self._read()

    def _read(self) -> dict:
        for line in self.process.stdout:
            if line.startswith("{"):
                return json.loads(line)
        raise RuntimeError(f"{self.side} worker exited with {self.process.wait()}")

    def ask(self, command: str) -> dict:
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()
        return self._read()

    def close(self) -> None:
        self.process.stdin.write("quit\n")
        self.process.stdin.close()
        self.process.wait()


def measure(case: str, steps: int, warmup: int, threads: int) -> dict:
    workers = {"ms": Worker("ms", case, threads), "torch": Worker("torch", case, threads)}
    times = {(side, kind): [] for side in workers for kind in ("train", "infer")}
    try:
        for kind in ("train", "infer"):
            for step in range(warmup + steps):
                for side, worker in workers.items():
                    seconds = worker.ask(kind)["seconds"]
                    if step >= warmup:
                        times[(side, kind)].append(seconds)
        folded = []
        if CASES[case]["mode"] != "finetune":
            workers["ms"].ask("fold")
            for step in range(warmup + steps):
                seconds = workers["ms"].ask("infer")["seconds"]
                if step >= warmup:
                    folded.append(seconds)
        rss = {side: worker.ask("rss")["peak_rss_mb"] for side, worker in workers.items()}
    finally:
        for worker in workers.values():
            worker.close()
    result = {"case": case, **{f"{side}_{kind}_s": statistics.median(values) for (side, kind), values in times.items()},
              **{f"{side}_peak_rss_mb": value for side, value in rss.items()}}
    for kind in ("train", "infer"):
        result[f"{kind}_ratio"] = result[f"ms_{kind}_s"] / result[f"torch_{kind}_s"]
    result["rss_ratio"] = rss["ms"] / rss["torch"]
    result["ms_infer_folded_s"] = statistics.median(folded) if folded else None
    return result


def _cell(value, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def markdown(results: list, header: str) -> str:
    lines = [header, "",
             "| case | ms train s/step | torch train s/step | ratio | ms infer s/batch | torch infer s/batch | ratio "
             "| ms infer folded s/batch | folding speed-up | ms peak RSS MB | torch peak RSS MB | ratio |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r['case']} | {r['ms_train_s']:.3f} | {r['torch_train_s']:.3f} | {r['train_ratio']:.2f} "
                     f"| {r['ms_infer_s']:.3f} | {r['torch_infer_s']:.3f} | {r['infer_ratio']:.2f} "
                     f"| {_cell(r['ms_infer_folded_s'], '.3f')} "
                     f"| {_cell(r['ms_infer_folded_s'] and r['ms_infer_s'] / r['ms_infer_folded_s'], '.2f')} "
                     f"| {r['ms_peak_rss_mb']:.0f} | {r['torch_peak_rss_mb']:.0f} | {r['rss_ratio']:.2f} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", default=",".join(DEFAULT_CASES), help=f"from {', '.join(CASES)}")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--output_dir", default=os.path.join(ROOT, "benchmarks", "out"))
    options = parser.parse_args(argv)
    results = []
    for case in options.cases.split(","):
        started = time.time()
        results.append(measure(case, options.steps, options.warmup, options.threads))
        print(f"{case}: done in {time.time() - started:.0f}s", file=sys.stderr)
    header = (f"Measured {time.strftime('%Y-%m-%d')} on {platform.machine()} {platform.processor() or ''} "
              f"({os.cpu_count()} cores, {options.threads} threads per side), {options.warmup} warm-up + "
              f"{options.steps} timed steps, medians; ratio = ms_ptuning / PyTorch reference (< 1: ms_ptuning faster).")
    write_results(options.output_dir, "results", markdown(results, header), {"header": header, "results": results})
    return 0


def write_results(output_dir: str, name: str, table: str, numbers: dict) -> None:
    """Print the markdown table; write it to `<name>.md` and the numbers to `<name>.json` in output_dir."""
    print(table)
    os.makedirs(output_dir, exist_ok=True)
    with open(os.path.join(output_dir, f"{name}.md"), "w") as handle:
        handle.write(table)
    with open(os.path.join(output_dir, f"{name}.json"), "w") as handle:
        json.dump(numbers, handle, indent=2)


if __name__ == "__main__":
    sys.exit(main())

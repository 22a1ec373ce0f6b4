"""Speed and memory of ms_ptuning's backends against the PyTorch reference, measured side by side in one run.

`python -m benchmarks.run [--cases a,b] [--backends graph,eager] [--steps 5] [--warmup 2] [--round_steps N]
[--threads 2] [--output_dir benchmarks/out] [--update_results benchmarks/RESULTS.md]`

Per case, one long-lived worker process for the torch reference and one per ms_ptuning backend (same thread
count, config and batch; `benchmarks/worker.py`). The ms_ptuning side is the Trainer's step engine for its
backend (`GraphSteps` / `EagerSteps`) over the head `build_model` builds. The workers take turns in rounds so
that all see the same machine load; in a round each runs `round_steps` steps back to back, as a training loop
does (the case's default: 1 for the large cases, more for the millisecond-long tiny steps, which would
otherwise time MindSpore's thread pool waking up after the other side's turn, not the step). After the
warm-up rounds the median per-step time of the timed rounds is reported, with each worker's peak RSS and the
graph backend's compile seconds (train: the step's graphs; inference: the eval graph) and kernels per train step
and per inference batch (`benchmarks/kernels.py`, counted untimed in a process of its own), and beside each ratio
the ratio of process CPU seconds per step, which other jobs on the machine disturb less than wall time (torch's
OpenMP threads spin while waiting, which counts as CPU time). A side that fails to
build or run gets a row saying why. Prints the table and writes `results.md` / `results.json` to the output
directory; `--update_results FILE` also replaces the generated section of FILE (benchmarks/RESULTS.md).
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

from ms_ptuning.cli import report_user_errors
from ms_ptuning.device.jit import DEFAULT_JIT_LEVEL, JIT_LEVEL_HELP, set_jit_level
from ms_ptuning.device.target import require_device

from .configs import CASES, DEFAULT_CASES
from .kernels import count_kernels, totals
from .report import header, markdown, update_results

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BACKENDS = ("graph", "eager")


class WorkerFailed(RuntimeError):
    pass


class Worker:
    """One side in its own process (`benchmarks.worker`), its stderr kept in `log_path`."""

    def __init__(self, side: str, case: str, threads: int, log_path: str, device: tuple = ("CPU", "O0")):
        env = dict(os.environ, OMP_NUM_THREADS=str(threads), PYTHONUNBUFFERED="1")
        self.side = side
        with open(log_path, "w") as log:
            self.process = subprocess.Popen([sys.executable, "-m", "benchmarks.worker", side, case, str(threads),
                                             *device],
                                            cwd=ROOT, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                            stderr=log, text=True)
        self.ready = self._read()

    def _read(self) -> dict:
        for line in self.process.stdout:
            if line.startswith("{"):
                answer = json.loads(line)
                if "error" in answer:
                    raise WorkerFailed(answer["error"])
                return answer
        raise WorkerFailed(f"the {self.side} worker exited with status {self.process.wait()}")

    def ask(self, command: str) -> dict:
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()
        return self._read()

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.stdin.write("quit\n")
            self.process.stdin.close()
        self.process.wait()


def start_workers(case: str, sides: list, threads: int, log_dir: str, device: tuple = ("CPU", "O0")) -> tuple:
    """(side → Worker for those that started, side → error for those that did not); `device`: the ms_ptuning
    sides' (--device_target, --jit_level)."""
    workers, errors = {}, {}
    for side in sides:
        try:
            workers[side] = Worker(side, case, threads, os.path.join(log_dir, f"{case}.{side}.log"), device)
        except WorkerFailed as error:
            errors[side] = str(error)
    return workers, errors


def timed_rounds(workers: dict, errors: dict, kind: str, rounds: int, warmup: int, round_steps: int) -> dict:
    """side → (median wall seconds, median process CPU seconds) per step over the timed rounds; the workers
    take turns round by round. A worker that fails leaves the rotation with its error recorded."""
    times = {side: [] for side in workers}
    for index in range(warmup + rounds):
        for side, worker in list(workers.items()):
            try:
                answer = worker.ask(f"{kind} {round_steps}")
            except WorkerFailed as error:
                errors[side] = f"{kind}: {error}"
                workers.pop(side).close()
                continue
            if index >= warmup:
                times[side].append((answer["seconds"] / round_steps, answer["cpu_seconds"] / round_steps))
    return {side: tuple(statistics.median(clock) for clock in zip(*values))
            for side, values in times.items() if side in workers}


def measure(case: str, backends: list, steps: int, warmup: int, threads: int, round_steps: int | None = None,
            log_dir: str = None, device: tuple = ("CPU", "O0")) -> list:
    """One row per backend of `case` (dicts of numbers, see report.markdown); `device`: the ms_ptuning sides'
    (--device_target, --jit_level)."""
    round_steps = round_steps or CASES[case].get("round_steps", 1)
    log_dir = log_dir or os.path.join(ROOT, "benchmarks", "out")
    os.makedirs(log_dir, exist_ok=True)
    workers, errors = start_workers(case, ["torch", *backends], threads, log_dir, device)
    versions = {name: v for worker in workers.values() for name, v in worker.ready.get("versions", {}).items()}
    try:
        train = timed_rounds(workers, errors, "train", steps, warmup, round_steps)
        infer = timed_rounds(workers, errors, "infer", steps, warmup, round_steps)
        folded = {}
        if CASES[case]["mode"] != "finetune":
            for side in [side for side in backends if side in workers]:
                workers[side].ask("fold")
            folded = timed_rounds({s: w for s, w in workers.items() if s != "torch"}, errors, "infer", steps,
                                  warmup, round_steps)
        stats = {side: worker.ask("stats") for side, worker in workers.items()}
    finally:
        for worker in workers.values():
            worker.close()
    kernels = graph_kernels(case) if "graph" in backends else None
    return [row(case, backend, train, infer, folded, stats, errors, round_steps, versions,
                kernels if backend == "graph" else None) for backend in backends]


def graph_kernels(case: str):
    """{"train": n, "infer": n} kernels of the case's graph step engine, or the reason they were not counted."""
    try:
        return totals(count_kernels(case))
    except RuntimeError as error:
        return str(error).splitlines()[0]


def row(case, backend, train, infer, folded, stats, errors, round_steps, versions, kernels=None) -> dict:
    values = {"case": case, "backend": backend, "round_steps": round_steps, "versions": versions,
              "error": errors.get(backend) or (f"torch reference: {errors['torch']}" if "torch" in errors else None),
              "kernels_train": kernels["train"] if isinstance(kernels, dict) else None,
              "kernels_infer": kernels["infer"] if isinstance(kernels, dict) else None,
              "kernels_error": kernels if isinstance(kernels, str) else None}


    if values["error"] or backend not in stats:
        return values
    compile_seconds = stats[backend]["compile_seconds"]
    for kind, times in (("train", train), ("infer", infer)):
        (ms_wall, ms_cpu), (torch_wall, torch_cpu) = times[backend], times["torch"]
        values.update({f"ms_{kind}_s": ms_wall, f"torch_{kind}_s": torch_wall, f"{kind}_ratio": ms_wall / torch_wall,
                       f"ms_{kind}_cpu_s": ms_cpu, f"torch_{kind}_cpu_s": torch_cpu,
                       f"{kind}_cpu_ratio": ms_cpu / torch_cpu if torch_cpu else None})
    values.update({
        "ms_infer_folded_s": folded[backend][0] if backend in folded else None,
        "ms_peak_rss_mb": stats[backend]["peak_rss_mb"], "torch_peak_rss_mb": stats["torch"]["peak_rss_mb"],
        "rss_ratio": stats[backend]["peak_rss_mb"] / stats["torch"]["peak_rss_mb"],
        "compile_train_s": sum(s for label, s in compile_seconds.items() if not label.startswith("eval"))
        if compile_seconds else None,
        "compile_infer_s": sum(s for label, s in compile_seconds.items() if label.startswith("eval"))
        if compile_seconds else None})
    return values


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", default=",".join(DEFAULT_CASES), help=f"comma-separated, from {', '.join(CASES)}")
    parser.add_argument("--backends", default=",".join(BACKENDS), help="comma-separated ms_ptuning backends")
    parser.add_argument("--steps", type=int, default=5, help="timed rounds")
    parser.add_argument("--warmup", type=int, default=2, help="untimed rounds first (the first compiles)")
    parser.add_argument("--round_steps", type=int, default=None, help="steps per round (default: the case's)")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--output_dir", default=os.path.join(ROOT, "benchmarks", "out"))
    parser.add_argument("--update_results", default=None, metavar="FILE",
                        help="replace the generated section of FILE (benchmarks/RESULTS.md) with this run's")
    parser.add_argument("--device_target", default="CPU", help="the ms_ptuning sides' device: CPU | GPU | Ascend "
                        "(the torch reference runs on CPU)")
    parser.add_argument("--jit_level", default=DEFAULT_JIT_LEVEL, help=JIT_LEVEL_HELP)
    options = parser.parse_args(argv)
    return report_user_errors("benchmarks.run", run_benchmarks, parser, options)


def run_benchmarks(parser, options) -> int:
    require_device(options.device_target)  # here, before any worker starts: one line if the device is missing
    set_jit_level(options.jit_level, options.device_target)
    cases, backends = options.cases.split(","), options.backends.split(",")
    for name, known, given in (("--cases", CASES, cases), ("--backends", BACKENDS, backends)):
        unknown = [value for value in given if value not in known]
        if unknown:
            parser.error(f"{name}: unknown {', '.join(unknown)}; choose from {', '.join(known)}")
    started_header = header(options)
    results = []
    for case in cases:
        started = time.time()
        results += measure(case, backends, options.steps, options.warmup, options.threads, options.round_steps,
                           options.output_dir, (options.device_target, options.jit_level))
        print(f"{case}: done in {time.time() - started:.0f}s", file=sys.stderr)
    table = markdown(results, started_header)
    write_results(options.output_dir, "results", table, {"header": started_header, "results": results})
    if options.update_results:
        update_results(options.update_results, table)
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

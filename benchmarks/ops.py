"""Where a BERT-base train step loses time: single operators, ms_ptuning's stack vs the PyTorch reference.

`python -m benchmarks.ops [--threads 2] [--repeats 7] [--output_dir benchmarks/out]`

Each operator of one BERT-base layer (batch 8, 128 tokens + 16 prefix positions) runs forward, and forward
plus backward to its input, in a process per side (mindtorch on MindSpore / real torch) with the same
thread count; medians of `--repeats` calls, the two sides alternating operator by operator. Writes
`ops.md` and `ops.json` to the output directory and prints the table.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

from .run import ROOT, write_results

BATCH, TOKENS, KEYS, HIDDEN, HEADS, INTERMEDIATE = 8, 128, 144, 768, 12, 3072
# name → (input shape, what it computes); inputs are standard-normal float32
OPERATORS = {
    "linear 768→3072": ((BATCH, TOKENS, HIDDEN), "linear"),
    "gelu (erf)": ((BATCH, TOKENS, INTERMEDIATE), "gelu"),
    "softmax over keys": ((BATCH, HEADS, TOKENS, KEYS), "softmax"),
    "attention scores q·kᵀ": ((BATCH, HEADS, TOKENS, HIDDEN // HEADS), "scores"),
    "layer norm": ((BATCH, TOKENS, HIDDEN), "layer_norm"),
    "dropout 0.1": ((BATCH, TOKENS, HIDDEN), "dropout"),
    "add (residual)": ((BATCH, TOKENS, HIDDEN), "add"),
}


def operator(kind: str, torch):
    functional = torch.nn.functional
    if kind == "linear":
        layer = torch.nn.Linear(HIDDEN, INTERMEDIATE)
        for parameter in layer.parameters():
            parameter.requires_grad = False  # frozen backbone, as in prefix/prompt mode
        return layer
    if kind == "layer_norm":
        return torch.nn.LayerNorm(HIDDEN)
    return {"gelu": functional.gelu,
            "softmax": lambda x: functional.softmax(x, dim=-1),
            "scores": lambda x: torch.matmul(x, x.transpose(-1, -2)),
            "dropout": lambda x: functional.dropout(x, 0.1, True),
            "add": lambda x: x + x}[kind]


def side_main(side: str, threads: int) -> None:
    """Worker: reads an operator name per line, answers {"forward_ms", "backward_ms"} (backward = fwd+bwd)."""
    import numpy as np

    if side == "ms":
        import mindspore

        from ms_ptuning.backend import set_threads, torch

        set_threads(threads)

        def forward_backward(fn, x):
            grad = mindspore.value_and_grad(lambda a: fn(a).sum(), grad_position=0)
            return lambda: grad(x)[1].asnumpy()

        def forward(fn, x):
            return lambda: fn(x).asnumpy()
    else:
        import torch

        torch.set_num_threads(threads)

        def forward_backward(fn, x):
            leaf = x.clone().requires_grad_(True)
            return lambda: torch.autograd.grad(fn(leaf).sum(), leaf)[0].numpy()

        def forward(fn, x):
            def run():
                with torch.no_grad():
                    return fn(x).numpy()
            return run
    rng = np.random.default_rng(0)
    print("{}", flush=True)
    for line in sys.stdin:
        name, repeats = line.rstrip("\n").rsplit("|", 1)
        shape, kind = OPERATORS[name]
        fn = operator(kind, torch)
        x = torch.tensor(rng.standard_normal(shape).astype(np.float32))
        timings = {}
        for label, call in (("forward_ms", forward(fn, x)), ("backward_ms", forward_backward(fn, x))):
            call()  # warm-up: kernel selection, first allocation
            samples = []
            for _ in range(int(repeats)):
                started = time.perf_counter()
                call()
                samples.append((time.perf_counter() - started) * 1000)
            timings[label] = statistics.median(samples)
        print(json.dumps(timings), flush=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--output_dir", default=os.path.join(ROOT, "benchmarks", "out"))
    parser.add_argument("--side", choices=("ms", "torch"), help=argparse.SUPPRESS)  # worker mode
    options = parser.parse_args(argv)
    if options.side:
        side_main(options.side, options.threads)
        return 0
    env = dict(os.environ, OMP_NUM_THREADS=str(options.threads), PYTHONUNBUFFERED="1")
    workers = {side: subprocess.Popen([sys.executable, "-m", "benchmarks.ops", "--side", side,
                                       "--threads", str(options.threads)], cwd=ROOT, env=env, text=True,
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
               for side in ("ms", "torch")}

    def answer(worker) -> dict:
        for line in worker.stdout:
            if line.startswith("{"):
                return json.loads(line)
        raise RuntimeError(f"benchmark worker exited with {worker.wait()}")

    for worker in workers.values():
        answer(worker)
    rows = []
    for name in OPERATORS:
        timings = {}
        for side, worker in workers.items():
            worker.stdin.write(f"{name}|{options.repeats}\n")
            worker.stdin.flush()
            timings[side] = answer(worker)
        rows.append({"operator": name, **{f"{side}_{key}": value for side, values in timings.items()
                                          for key, value in values.items()}})
    for worker in workers.values():
        worker.stdin.close()
        worker.wait()
    header = (f"Measured {time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores, {options.threads} threads per side, "
              f"median of {options.repeats}; ratio = ms_ptuning stack / PyTorch (> 1: MindSpore slower).")
    lines = [header, "", "| operator (BERT-base layer shapes) | ms fwd ms | torch fwd ms | ratio | ms fwd+bwd ms "
             "| torch fwd+bwd ms | ratio |", "|---|---|---|---|---|---|---|"]
    for row in rows:
        lines.append(f"| {row['operator']} | {row['ms_forward_ms']:.1f} | {row['torch_forward_ms']:.1f} "
                     f"| {row['ms_forward_ms'] / row['torch_forward_ms']:.1f} | {row['ms_backward_ms']:.1f} "
                     f"| {row['torch_backward_ms']:.1f} | {row['ms_backward_ms'] / row['torch_backward_ms']:.1f} |")
    write_results(options.output_dir, "ops", "\n".join(lines) + "\n", {"header": header, "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())

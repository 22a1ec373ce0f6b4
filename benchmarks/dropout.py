"""What `layers.Dropout`'s masks cost: dropout off, the host mask it replaced, the composed int32 hash (the
devices' masks), the CPU kernel (the CPU's masks, the same bits).

`python -m benchmarks.dropout [--cases bert_base_prefix,tiny_prefix] [--rounds 7] [--warmup 2] [--threads 2]`

Per case one worker process per variant (same config, batch and thread count):
- `off`: every `layers.Dropout` has p = 0 (the graph holds no mask at all);
- `host`: the masks before issue 19 — numpy (SFC64) on the host, called from the graph through a `pyfunc`
  Custom op pinned to the CPU (kept here as the baseline; the package has no host op any more);
- `composed`: the counter-based int32 hash composed of MindSpore ops in the graph, what Ascend and GPU compute
  (and the CPU did before `device/cpu_kernels.py`);
- `kernel`: `layers.Dropout` as it is on CPU, the same hash from the CPU kernel (`device/cpu_kernels.py`).
Each worker times the case's compiled train step (`GraphSteps`, as `benchmarks.run` does) and, alone, one
compiled dropout forward + backward on the case's two activation shapes (hidden states and attention
probabilities). The workers take turns in rounds so that all see the same machine load; medians of the timed
rounds are printed, with each variant's step time relative to `off`.
"""

import argparse
import itertools
import json
import os
import resource
import statistics
import subprocess
import sys
import time

from .configs import CASES
from .run import ROOT

VARIANTS = ("off", "host", "composed", "kernel")


def activation_shapes(case: dict) -> dict:
    backbone = case["backbone"]
    hidden = backbone.get("hidden_size", backbone.get("n_embd"))
    heads = backbone.get("num_attention_heads", backbone.get("n_head"))
    batch, tokens, keys = case["batch_size"], case["seq_len"], case["seq_len"] + case["pre_seq_len"]
    return {"hidden": (batch, tokens, hidden), "attention": (batch, heads, tokens, keys)}


def use_host_masks() -> None:
    """Give every `layers.Dropout` built from now on the host mask it had before issue 19."""
    import numpy as np
    from mindspore import ops

    from ms_ptuning import layers

    def keep_mask_function(p: float, site: int):
        scale = np.float32(1.0 / (1.0 - p))
        threshold = np.uint32(min(round(p * 2**32), 2**32 - 1))

        def keep_mask(x, key):
            bits = np.random.SFC64(np.random.SeedSequence([int(k) % 2**64 for k in key] + [site]))
            draws = bits.random_raw((x.size + 1) // 2).view(np.uint32)[:x.size]
            return ((draws >= threshold) * scale).astype(x.dtype, copy=False).reshape(x.shape)

        return keep_mask

    def like_input(x_shape_or_dtype, key_shape_or_dtype):
        return x_shape_or_dtype

    device_init = layers.Dropout.__init__

    def host_init(self, p):
        device_init(self, p)
        self.host_mask = ops.Custom(keep_mask_function(p, self.site), out_shape=like_input, out_dtype=like_input,
                                    func_type="pyfunc").set_device("CPU")

    def host_construct(self, x, mask=None):
        if not self.training or self.p == 0.0:
            return x
        return ops.mul(x, ops.stop_gradient(self.host_mask(x, layers.DROPOUT_KEY.value)))

    def no_shared_masks(self, shape, dtype):
        return (None,) * len(self.sites)  # every site draws its own host mask

    layers.Dropout.__init__, layers.Dropout.construct = host_init, host_construct
    layers.SharedMasks.construct = no_shared_masks


def use_composed_masks() -> None:
    """Give every `layers.Dropout` built from now on the composed hash, as built for Ascend and GPU."""
    from ms_ptuning import layers

    layers.cpu_kernel_chosen = lambda: False


def use_no_dropout() -> None:
    from ms_ptuning import layers

    device_init = layers.Dropout.__init__

    def off_init(self, p):
        device_init(self, p)
        self.p = 0.0

    layers.Dropout.__init__ = off_init


def serve(case_name: str, variant: str, threads: int) -> None:
    """Worker: answers `step N` (N train steps) and `site NAME N` (N dropout forward + backward) with seconds."""
    from .worker import mindspore_side  # imports ms_ptuning.backend first (mindnlp patches transformers)

    import numpy as np
    from mindspore import Tensor, nn, ops

    from ms_ptuning import layers
    from ms_ptuning.backend import graph_mode

    {"off": use_no_dropout, "host": use_host_masks, "composed": use_composed_masks, "kernel": lambda: None}[variant]()
    case = CASES[case_name]
    train, *_ = mindspore_side(case, threads, "graph")

    class SiteLoss(nn.Cell):
        def __init__(self):
            super().__init__()
            self.dropout = layers.Dropout(0.1)

        def construct(self, x):
            return ops.reduce_sum(self.dropout(x))

    class SiteStep(nn.Cell):
        """One dropout site forward and backward, compiled: what a train step pays per site."""

        def __init__(self):
            super().__init__()
            self.loss = SiteLoss()
            self.grad = ops.GradOperation()

        def construct(self, x):
            return self.grad(self.loss)(x)

    site_step = SiteStep()
    site_step.set_train(True)
    site_inputs = {name: Tensor(np.random.default_rng(0).standard_normal(shape).astype(np.float32))
                   for name, shape in activation_shapes(case).items()}
    layers.set_dropout_key(0, 1)

    def run_site(name):
        with graph_mode():
            site_step(site_inputs[name]).asnumpy()

    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        command, *words = line.split()
        if command == "quit":
            break
        if command == "stats":
            print(json.dumps({"peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}), flush=True)
            continue
        if command == "step":
            work, count = train, int(words[0])
        else:
            work, count = (lambda name=words[0]: run_site(name)), int(words[1])
        started = time.perf_counter()
        for _ in range(count):
            work()
        print(json.dumps({"seconds": (time.perf_counter() - started) / count}), flush=True)


class Worker:
    def __init__(self, case: str, variant: str, threads: int):
        env = dict(os.environ, OMP_NUM_THREADS=str(threads), PYTHONUNBUFFERED="1")
        self.process = subprocess.Popen([sys.executable, "-m", "benchmarks.dropout", "--serve", case, variant,
                                         str(threads)], cwd=ROOT, env=env, stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        self.ask(None)

    def ask(self, command: str | None) -> dict:
        if command is not None:
            self.process.stdin.write(command + "\n")
            self.process.stdin.flush()
        for line in self.process.stdout:
            if line.startswith("{"):
                return json.loads(line)
        raise RuntimeError(f"the worker exited with status {self.process.wait()} (run it with --serve to see why)")

    def close(self):
        if self.process.poll() is None:
            self.process.stdin.write("quit\n")
            self.process.stdin.flush()
        self.process.wait()


def measure(case_name: str, rounds: int, warmup: int, threads: int) -> dict:
    case = CASES[case_name]
    round_steps = case.get("round_steps", 1)
    workers = {variant: Worker(case_name, variant, threads) for variant in VARIANTS}
    commands = {"train step": f"step {round_steps}",
                **{f"{name} {shape} fwd+bwd": f"site {name} {round_steps}"
                   for name, shape in activation_shapes(case).items()}}
    times = {(label, variant): [] for label in commands for variant in VARIANTS}
    try:
        for round_index in range(warmup + rounds):
            for (label, command), variant in itertools.product(commands.items(), VARIANTS):
                seconds = workers[variant].ask(command)["seconds"]
                if round_index >= warmup:
                    times[label, variant].append(seconds)
        peak_rss = {variant: workers[variant].ask("stats")["peak_rss_mb"] for variant in VARIANTS}
    finally:
        for worker in workers.values():
            worker.close()
    medians = {label: {variant: statistics.median(times[label, variant]) * 1000 for variant in VARIANTS}
               for label in commands}
    return {**medians, "peak RSS (MB)": peak_rss}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cases", default="bert_base_prefix,tiny_prefix")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--serve", nargs=3, metavar=("CASE", "VARIANT", "THREADS"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        serve(args.serve[0], args.serve[1], int(args.serve[2]))
        return
    print(f"medians of {args.rounds} rounds, {args.threads} threads; times in ms per step")
    print("| case | what | off | host mask | composed hash | CPU kernel | kernel / off | kernel / host | "
          "kernel / composed |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for case_name in args.cases.split(","):
        for label, values in measure(case_name, args.rounds, args.warmup, args.threads).items():
            off, host, composed, kernel = (values[variant] for variant in VARIANTS)
            print(f"| {case_name} | {label} | {off:.3f} | {host:.3f} | {composed:.3f} | {kernel:.3f} | "
                  f"{kernel / off:.2f} | {kernel / host:.2f} | {kernel / composed:.2f} |", flush=True)


if __name__ == "__main__":
    main()

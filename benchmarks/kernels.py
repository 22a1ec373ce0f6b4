"""Kernels launched per compiled train step and per inference batch of each benchmark case, counted, not timed.

`python -m benchmarks.kernels [--cases a,b] [--by_op]`

Each case is counted twice, with the native backbones' per-device choices for CPU and for Ascend/GPU
(`ms_ptuning.device.kernels`: compositions on CPU; on the devices MindSpore's LayerNorm and GeLU kernels, one
q/k/v product, heads by reshape + transpose, broadcasting elementwise ops), both compiled here on CPU.

The count is every kernel of the final actor set. On Ascend and GPU, MindSpore's backend also drops Reshape,
ExpandDims, Squeeze and Flatten from the execution order (nop nodes: `IsNopNode` / `HideNopNode` in
mindspore/ccsrc/backend/common/optimizer/helper.cc; on CPU they run); the "launched on the device" columns
count the Ascend/GPU choice without them (read from MindSpore's source, not run on a device).

On an NPU running kernel by kernel, and on CPU for millisecond-long steps, each launch costs several µs, so the
count is a cost of its own. Each case compiles the graph backend's step engine (the benchmark worker's
`GraphSteps` over the head `build_model` builds) in a process of its own with MindSpore's IR dump limited to the
actor sets (`save_graphs` with `MS_DEV_DUMP_IR_PASSES=actor_set`: a few MB instead of hundreds). The final
actor set lists every kernel the graph executor launches, one line `%N = kernel_graphK:Op-opM(...)` each. The
train step is one graph (no gradient accumulation) whose update branch holds clipping and AdamW and whose
skip branch (a non-finite loss) launches nothing, so its count is what an applied step launches; inference
is the eval graph. The count is deterministic: it does not depend on machine load.
"""

import argparse
import collections
import json
import os
import re
import subprocess
import sys
import tempfile

from .configs import CASES, DEFAULT_CASES

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHOICES = ("CPU", "Ascend/GPU")
NOP_ON_DEVICES = ("Reshape", "ExpandDims", "Squeeze", "Flatten")
KERNEL_LINE = re.compile(r"^%\d+ = kernel_graph\d+:([A-Za-z0-9_]+)-op\d+\(", re.M)


def kernels_in(dump_dir: str) -> collections.Counter:
    """Kernels by primitive name in the final actor set(s) MindSpore dumped under `dump_dir`."""
    actor_dir = os.path.join(dump_dir, "actor_set")
    names = sorted(n for n in os.listdir(actor_dir) if n.startswith("final_actor_set")) if os.path.isdir(
        actor_dir) else []
    if not names:
        raise RuntimeError(f"MindSpore dumped no final actor set under {dump_dir}")
    counts = collections.Counter()
    for name in names:
        with open(os.path.join(actor_dir, name)) as handle:
            counts.update(KERNEL_LINE.findall(handle.read()))
    return counts


def count_in_this_process(case_name: str, dump_root: str, choices: str) -> dict:
    """Compile and run one train step and one inference batch of `case_name` with `choices` ("CPU" or
    "Ascend/GPU"), each graph dumped to its own directory; → {"train": {op: count}, "infer": {op: count}}.
    Must run in a fresh process (the dump settings apply from the first compilation)."""
    import mindspore

    from ms_ptuning.device import kernels

    kernels.FORCED = choices != "CPU"

    mindspore.set_context(save_graphs=True, save_graphs_path=os.path.join(dump_root, "train"))
    from .worker import mindspore_side

    train, infer, _, _, _ = mindspore_side(CASES[case_name], 1, "graph")
    train()
    mindspore.set_context(save_graphs_path=os.path.join(dump_root, "infer"))
    infer()
    return {kind: dict(kernels_in(os.path.join(dump_root, kind))) for kind in ("train", "infer")}


def count_kernels(case_name: str, choices: str = "CPU") -> dict:
    """{"train": {op: count}, "infer": {op: count}} of `case_name` on the graph backend with the native
    backbones' choices for `choices` ("CPU" or "Ascend/GPU"), counted in a child process; raises RuntimeError
    with the child's last output lines if it fails."""
    with tempfile.TemporaryDirectory(prefix="kernels-") as dump_root:
        env = dict(os.environ, MS_DEV_DUMP_IR_PASSES="actor_set", PYTHONUNBUFFERED="1")
        done = subprocess.run([sys.executable, "-m", "benchmarks.kernels", "--child", case_name, dump_root, choices],
                              cwd=ROOT, env=env, capture_output=True, text=True)
        answers = [line for line in done.stdout.splitlines() if line.startswith("{")]
        if done.returncode != 0 or not answers:
            tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-5:])
            raise RuntimeError(f"counting the kernels of {case_name} failed (status {done.returncode}):\n{tail}")
        return json.loads(answers[-1])


def totals(counts: dict, skip=()) -> dict:
    """{"train": n, "infer": n} from count_kernels' answer, without the primitives in `skip`."""
    return {kind: sum(n for op, n in by_op.items() if op not in skip) for kind, by_op in counts.items()}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", default=",".join(DEFAULT_CASES), help=f"comma-separated, from {', '.join(CASES)}")
    parser.add_argument("--by_op", action="store_true", help="also list the kernels of each graph by primitive")
    parser.add_argument("--child", nargs=3, metavar=("CASE", "DUMP_DIR", "CHOICES"), help=argparse.SUPPRESS)
    options = parser.parse_args(argv)
    if options.child:
        print(json.dumps(count_in_this_process(*options.child)), flush=True)
        return 0
    cases = options.cases.split(",")
    unknown = [case for case in cases if case not in CASES]
    if unknown:
        parser.error(f"--cases: unknown {', '.join(unknown)}; choose from {', '.join(CASES)}")
    print("| case | choices | kernels per train step | kernels per inference batch | train, launched on the device "
          "| inference, launched on the device |\n|---|---|---|---|---|---|")
    details = []
    for case in cases:
        for choices in CHOICES:
            counts = count_kernels(case, choices)
            total = totals(counts)
            launched = totals(counts, NOP_ON_DEVICES) if choices != "CPU" else {"train": "—", "infer": "—"}
            print(f"| {case} | {choices} | {total['train']} | {total['infer']} | {launched['train']} "
                  f"| {launched['infer']} |", flush=True)
            details.append((f"{case} ({choices})", counts))
    if options.by_op:
        for name, counts in details:
            for kind, by_op in counts.items():
                ranked = sorted(by_op.items(), key=lambda item: (-item[1], item[0]))
                print(f"\n{name} {kind}: " + ", ".join(f"{op} {n}" for op, n in ranked))
    return 0


if __name__ == "__main__":
    sys.exit(main())

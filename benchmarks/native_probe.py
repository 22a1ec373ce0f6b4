"""Native GRAPH_MODE backbone vs real torch, side by side: `python -m benchmarks.native_probe [--cases ...]`.

Each side runs in its own long-lived process with the same thread count (torch never imports mindnlp). A
case is a backbone with a P-tuning v2 prefix (frozen backbone, train-mode dropout as THUDM runs it) and a
linear classifier on the pooled output (GPT-2: on the last hidden state); a train step is forward + backward
to the prefix only, an inference step an eval-mode forward. Steps alternate between the sides so both see
the same machine load; medians after the warm-up are reported with each side's peak RSS, the native side's
compile seconds (first train step and first inference, each a new graph) and RSS at each stage.

Not a test: timings on a shared machine are noisy; the table says so.
"""

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

from benchmarks.configs import BERT_BASE, GPT2_SMALL, TINY_BERT

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

CASES = {
    "bert_base_prefix": dict(backbone=BERT_BASE, pre_seq_len=16, batch_size=8, seq_len=128),
    "gpt2_small_prefix": dict(backbone=GPT2_SMALL, pre_seq_len=16, batch_size=2, seq_len=256),
    "tiny_prefix": dict(backbone=TINY_BERT, pre_seq_len=4, batch_size=2, seq_len=8),
}


def rss_mb() -> float:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def make_inputs(case: dict) -> dict:
    import numpy as np

    rng = np.random.default_rng(0)
    shape = (case["batch_size"], case["seq_len"])
    config = case["backbone"]
    hidden = config.get("hidden_size", config.get("n_embd"))
    layers = config.get("num_hidden_layers", config.get("n_layer"))
    return {"input_ids": rng.integers(5, config["vocab_size"], shape).astype(np.int64),
            "attention_mask": np.ones((shape[0], case["pre_seq_len"] + shape[1]), np.int64),
            "labels": rng.integers(0, 2, shape[0]).astype(np.int64),
            "prefix": (rng.standard_normal((case["pre_seq_len"], 2 * layers * hidden)) * 0.02).astype(np.float32),
            "classifier": (rng.standard_normal((hidden, 2)) * 0.02).astype(np.float32)}


def torch_side(case: dict, threads: int, options) -> tuple:
    import torch
    import torch.nn.functional as F
    import transformers
    from transformers.cache_utils import DynamicCache

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    stages = {"imported": rss_mb()}
    config = transformers.AutoConfig.for_model(**case["backbone"])
    model = transformers.AutoModel.from_config(config, attn_implementation="eager")
    model.requires_grad_(False)
    stages["model"] = rss_mb()
    arrays = make_inputs(case)
    prefix = torch.nn.Parameter(torch.tensor(arrays["prefix"]))
    classifier = torch.tensor(arrays["classifier"])
    ids, mask, labels = (torch.tensor(arrays[k]) for k in ("input_ids", "attention_mask", "labels"))
    layers, heads = config.num_hidden_layers, config.num_attention_heads
    batch, steps = ids.shape

    def loss():
        kv = prefix.unsqueeze(0).expand(batch, -1, -1)
        kv = kv.reshape(batch, case["pre_seq_len"], 2 * layers, heads, -1).permute(2, 0, 3, 1, 4)
        cache = DynamicCache.from_legacy_cache(tuple((kv[2 * i], kv[2 * i + 1]) for i in range(layers)))
        out = model(input_ids=ids, attention_mask=mask, past_key_values=cache)
        features = out.pooler_output if config.model_type != "gpt2" else out.last_hidden_state[:, -1]
        return F.cross_entropy(features @ classifier, labels)

    def train():
        model.train()
        value = loss()
        value.backward()
        prefix.grad = None
        return float(value)

    def infer():
        model.eval()
        with torch.no_grad():
            return float(loss())

    return train, infer, stages


def native_cells():
    """The probe's MindSpore Cells (defined after mindspore is imported, on the native side only)."""
    from mindspore import Parameter, ParameterTuple, Tensor, nn, ops
    import mindspore

    class PrefixClassifier(nn.Cell):
        def __init__(self, backbone, arrays, pre_seq_len):
            super().__init__()
            config = backbone.config
            self.backbone = backbone
            self.prefix = Parameter(Tensor(arrays["prefix"]), name="prefix")
            self.classifier = Parameter(Tensor(arrays["classifier"]), name="classifier", requires_grad=False)
            self.shape = (pre_seq_len, 2 * config.num_hidden_layers, config.num_attention_heads,
                          config.hidden_size // config.num_attention_heads)

        def construct(self, input_ids, attention_mask, labels):
            batch, steps = input_ids.shape
            kv = ops.broadcast_to(ops.expand_dims(self.prefix, 0), (batch,) + self.prefix.shape)
            kv = ops.unstack(ops.transpose(ops.reshape(kv, (batch,) + self.shape), (2, 0, 3, 1, 4)), 0)
            pairs = tuple((kv[2 * i], kv[2 * i + 1]) for i in range(len(kv) // 2))
            sequence, pooled = self.backbone(input_ids=input_ids, attention_mask=attention_mask,
                                             prefix_key_values=pairs)
            features = pooled if pooled is not None else ops.squeeze(ops.narrow(sequence, 1, steps - 1, 1), 1)
            return ops.cross_entropy(ops.matmul(features, self.classifier), labels)

    class GradStep(nn.Cell):
        def __init__(self, net):
            super().__init__()
            self.net = net
            self.grad_fn = mindspore.value_and_grad(net, None, ParameterTuple([net.prefix]))

        def construct(self, input_ids, attention_mask, labels):
            return self.grad_fn(input_ids, attention_mask, labels)

    return PrefixClassifier, GradStep


def native_side(case: dict, threads: int, options) -> tuple:
    import gc

    import mindspore
    from mindspore import Tensor

    from ms_ptuning.backend import seed_everything, set_threads
    from ms_ptuning.backbones import build_backbone
    from ms_ptuning.native import to_native
    import transformers

    set_threads(threads)
    seed_everything(0)
    stages = {"imported": rss_mb()}
    model = build_backbone(transformers.AutoConfig.for_model(**case["backbone"]))
    stages["model"] = rss_mb()
    backbone = to_native(model)
    del model
    gc.collect()
    stages["converted"] = rss_mb()
    for param in backbone.get_parameters():
        param.requires_grad = False
    PrefixClassifier, GradStep = native_cells()
    arrays = make_inputs(case)
    net = PrefixClassifier(backbone, arrays, case["pre_seq_len"])
    step = GradStep(net)
    inputs = [Tensor(arrays[k]) for k in ("input_ids", "attention_mask", "labels")]
    mindspore.set_context(mode=mindspore.GRAPH_MODE, jit_config={"jit_level": options.jit_level})

    def mode(training: bool) -> None:  # set_train walks every Cell: only when the mode changes, as a trainer would
        if net.training != training:
            net.set_train(training)

    def train():
        mode(True)
        loss, _ = step(*inputs)
        return float(loss.asnumpy())

    def infer():
        mode(False)
        return float(net(*inputs).asnumpy())

    return train, infer, stages


def worker(argv) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("side")
    parser.add_argument("case")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--jit_level", default="O0")
    options = parser.parse_args(argv)
    build = torch_side if options.side == "torch" else native_side
    train, infer, stages = build(CASES[options.case], options.threads, options)
    print(json.dumps({"ready": True, "stages": stages}), flush=True)
    for line in sys.stdin:
        command = line.strip()
        if command == "quit":
            break
        if command == "rss":
            print(json.dumps({"rss_mb": rss_mb(), "peak_rss_mb": peak_rss_mb()}), flush=True)
            continue
        started, cpu_started = time.perf_counter(), time.process_time()
        value = (train if command == "train" else infer)()
        print(json.dumps({"seconds": time.perf_counter() - started, "cpu_seconds": time.process_time() - cpu_started,
                          "value": value}), flush=True)


class Side:
    def __init__(self, side: str, case: str, options):
        argv = [sys.executable, "-m", "benchmarks.native_probe", "--worker", side, case,
                "--threads", str(options.threads), "--jit_level", options.jit_level]
        env = dict(os.environ, OMP_NUM_THREADS=str(options.threads), PYTHONUNBUFFERED="1")
        self.process = subprocess.Popen(argv, cwd=ROOT, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        stderr=subprocess.DEVNULL, text=True)
        self.ready = self._read()

    def _read(self) -> dict:
        for line in self.process.stdout:
            if line.startswith("{"):
                return json.loads(line)
        raise RuntimeError(f"worker exited with {self.process.wait()}")

    def ask(self, command: str) -> dict:
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()
        return self._read()

    def close(self) -> None:
        self.process.stdin.write("quit\n")
        self.process.stdin.close()
        self.process.wait()


def measure(case: str, options) -> dict:
    sides = {"native": Side("native", case, options), "torch": Side("torch", case, options)}
    result = {"case": case, "stages": {side: s.ready["stages"] for side, s in sides.items()}}
    try:
        for kind in ("train", "infer"):
            times = {(side, clock): [] for side in sides for clock in ("seconds", "cpu_seconds")}
            for step in range(1 + options.warmup + options.steps):
                for side, worker_process in sides.items():
                    answer = worker_process.ask(kind)
                    if step == 0:
                        result[f"{side}_first_{kind}_s"] = answer["seconds"]
                    elif step > options.warmup:
                        for clock in ("seconds", "cpu_seconds"):
                            times[(side, clock)].append(answer[clock])
            for side in sides:
                result[f"{side}_{kind}_s"] = statistics.median(times[(side, "seconds")])
                result[f"{side}_{kind}_cpu_s"] = statistics.median(times[(side, "cpu_seconds")])
            result[f"{kind}_ratio"] = result[f"native_{kind}_s"] / result[f"torch_{kind}_s"]
            result[f"{kind}_cpu_ratio"] = result[f"native_{kind}_cpu_s"] / result[f"torch_{kind}_cpu_s"]
            result[f"native_compile_{kind}_s"] = result[f"native_first_{kind}_s"] - result[f"native_{kind}_s"]
        for side, worker_process in sides.items():
            memory = worker_process.ask("rss")
            result[f"{side}_peak_rss_mb"], result[f"{side}_rss_mb"] = memory["peak_rss_mb"], memory["rss_mb"]
        result["rss_ratio"] = result["native_peak_rss_mb"] / result["torch_peak_rss_mb"]
    finally:
        for worker_process in sides.values():
            worker_process.close()
    return result


def table(results: list, header: str) -> str:
    lines = [header, "",
             "| case | native train s | torch train s | ratio (cpu-time ratio) | native infer s | torch infer s "
             "| ratio (cpu-time ratio) | compile train s | compile infer s | native peak MB | torch peak MB | ratio |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r['case']} | {r['native_train_s']:.3f} | {r['torch_train_s']:.3f} "
                     f"| {r['train_ratio']:.2f} ({r['train_cpu_ratio']:.2f}) "
                     f"| {r['native_infer_s']:.3f} | {r['torch_infer_s']:.3f} "
                     f"| {r['infer_ratio']:.2f} ({r['infer_cpu_ratio']:.2f}) "
                     f"| {r['native_compile_train_s']:.1f} | {r['native_compile_infer_s']:.1f} "
                     f"| {r['native_peak_rss_mb']:.0f} | {r['torch_peak_rss_mb']:.0f} | {r['rss_ratio']:.2f} |")
    lines.append("")
    for r in results:
        stages = "; ".join(f"{side}: " + ", ".join(f"{k} {v:.0f}" for k, v in s.items())
                           for side, s in r["stages"].items())
        lines.append(f"- {r['case']} RSS MB by stage: {stages}; after the steps native {r['native_rss_mb']:.0f}, "
                     f"torch {r['torch_rss_mb']:.0f}")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    if argv is None:
        argv = sys.argv[1:]
    if argv and argv[0] == "--worker":
        worker(argv[1:])
        return 0
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", default="bert_base_prefix", help=f"comma-separated, from {', '.join(CASES)}")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--jit_level", default="O0", choices=("O0", "O1"))
    parser.add_argument("--output", default=None, help="also write the table (markdown) and numbers (json) here")
    options = parser.parse_args(argv)
    with open("/proc/loadavg") as handle:
        load = handle.read().split()[0]
    results = [measure(case, options) for case in options.cases.split(",")]
    header = (f"{time.strftime('%Y-%m-%d %H:%M')}, {os.cpu_count()} cores, {options.threads} threads per side, "
              f"jit_level {options.jit_level}, {options.warmup} warm-up + {options.steps} timed steps (medians), "
              f"sides alternating; load average {load} before the run (other jobs share the cores: noisy).")
    text = table(results, header)
    print(text)
    if options.output:
        with open(options.output + ".md", "w") as handle:
            handle.write(text)
        with open(options.output + ".json", "w") as handle:
            json.dump({"header": header, "results": results}, handle, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""What the compiled graphs contain: the primitives of every train, eval and decode graph, checked for the device.

`python -m ms_ptuning.native.audit [--cases bert-prefix,gpt2-prompt-lstm ...]` compiles the graphs of tiny
native backbones (BERT, RoBERTa, GPT-2) in every mode, prints each graph's primitive inventory
(primitive → count) and the problems found, and exits with status 1 if there are any. A problem is
- a host-only node (`HOST_ONLY`: a Custom op running a Python function, PyExecute, PyFunc...), which a device graph cannot run
  without a round trip to Python on the host, or which whole-graph sink mode cannot run at all;
- a stateful random kernel (`STATEFUL_RANDOM`), which a resumed run cannot replay;
- a primitive whose MindSpore 2.7 documentation ("Supported Platforms") lacks Ascend or GPU;
- a primitive missing from `op_platforms.py`, so a new op is looked up before it ships;
- one of ms_ptuning's CPU kernels (`device/cpu_kernels.py`: dropout masks, GELU, LayerNorm, attention's
  softmax, GELU and LayerNorm fused with a bias or a residual, whole attention, the GEMM; named `cpu_kernels.<function>` in the
  inventories) in a graph built for Ascend and GPU: only the CPU's choice (`device/kernels.py`) holds them, as
  compiled C++ kernels of the CPU device (no Python runs), and the devices' choice computes the same from
  documented ops.

`op_platforms.py` maps every primitive the graphs use to the platforms its MindSpore 2.7.0 docstring
lists (the text of the API pages on mindspore.cn), or to null where MindSpore documents none (graph plumbing
such as Load or MakeTuple, gradient and inner ops). `--add_new` writes the primitives the graphs use that
the table lacks, taken from the installed MindSpore's docstrings.

The graph read is the one MindSpore's frontend hands to the backend (after autodiff and its optimisation
passes), read through the mind_ir protobuf, branches included: it is the same for every device target.
"""

import argparse
import collections
import os
import re
import sys
import tempfile

TABLE_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "op_platforms.py")
HOST_ONLY = ("Custom", "PyExecute", "PyFunc", "PyInterpret", "ScalarSummary", "TensorSummary", "Print")
# random kernels keep their state between launches of a compiled graph (or take a seed tensor that has no
# CPU kernel): a resumed run could not replay them; layers.Dropout hashes element indices instead
STATEFUL_RANDOM = ("Dropout", "DropoutExt", "DropoutGenMask", "DropoutGenMaskV3", "DropoutDoMask", "UniformReal",
                   "UniformExt", "UniformInt", "StandardNormal", "RandomStandardNormal", "Bernoulli", "BernoulliExt",
                   "RandLikeExt", "RandExt", "RandnLike", "Multinomial", "RandomChoiceWithMask", "RandpermExt")
REQUIRED_PLATFORMS = ("Ascend", "GPU")
CPU_KERNELS = "cpu_kernels."  # + function: how the inventories name the aot Custom ops of device/cpu_kernels.py


# ---- reading graphs -------------------------------------------------------------------------------------
def graph_primitives(cell) -> collections.Counter:
    """primitive name → number of nodes, over the compiled graph of `cell` and its sub-graphs (branches)."""
    from mindspore.common.api import _cell_graph_executor
    from mindspore.train import anf_ir_pb2, mind_ir_pb2

    exec_id = ".".join([cell.phase, str(cell.create_time), str(id(cell))])
    if not _cell_graph_executor.has_compiled(f"{exec_id}.{cell.arguments_key}"):
        raise ValueError(f"{type(cell).__name__} has no compiled graph (run it in GRAPH_MODE first)")
    try:
        serialized = _cell_graph_executor._get_func_graph_proto(cell, exec_id, "mind_ir", True)
    except RuntimeError as error:  # MindIR cannot hold a PyExecute node: read the top graph alone instead
        if "PyExecute" not in str(error):
            raise
        model = anf_ir_pb2.ModelProto()
        model.ParseFromString(_cell_graph_executor._get_func_graph_proto(cell, exec_id, "anf_ir", True))
        counts = collections.Counter(node.op_type for node in model.graph.node if node.op_type)
        counts["PyExecute"] = max(counts["PyExecute"], 1)
        return counts
    model = mind_ir_pb2.ModelProto()
    model.ParseFromString(serialized)
    graphs = [model.graph, *model.functions]
    graph_names = {graph.name for graph in graphs}
    cpu = _cpu_kernel_names(model)
    counts = collections.Counter()
    for graph in graphs:
        for node in graph.node:
            # a primitive node reads "REF::<primitive>:<id>"; calls of sub-graphs and constants are not primitives
            match = re.fullmatch(r"REF::((\w+):\d+)", node.op_type)
            if match and match.group(2) not in graph_names:
                counts[cpu.get(match.group(1), match.group(2))] += 1
    return counts


def _cpu_kernel_names(model) -> dict:
    """The model's primitives ("Custom:2") that are aot Custom ops of device/cpu_kernels.py →
    `cpu_kernels.<function>`."""
    from ..device import cpu_kernels

    names = {}
    for entry in model.primitives:
        attributes = {attribute.name: attribute.s.decode() for attribute in entry.attribute
                      if attribute.name in ("func_type", "func_name")}
        library, _, function = attributes.get("func_name", "").rpartition(":")
        if attributes.get("func_type") == "aot" and cpu_kernels.available() and library == cpu_kernels.library():
            names[entry.name] = CPU_KERNELS + function
    return names


def documented_platforms(name: str) -> list | None:
    """The platforms the installed MindSpore's docstring of primitive `name` lists ("Supported Platforms"),
    following a primitive's "is equivalent to ops.f(...)" / "Refer to mindspore.ops.f" to the function's
    docstring; None where MindSpore documents none."""
    import mindspore.ops
    from mindspore.ops import function, operations
    from mindspore.ops.auto_generate import gen_ops_def, gen_ops_prim
    from mindspore.ops.operations import _grad_ops, _inner_ops

    def doc_of(modules, attribute):
        return next((getattr(module, attribute).__doc__ or "" for module in modules
                     if getattr(getattr(module, attribute, None), "__doc__", None)), "")

    doc = doc_of((mindspore.ops, operations, gen_ops_prim, _grad_ops, _inner_ops), name)
    listed = re.search(r"Supported Platforms:\s*\n((?:[ \t]*``\w+``)+)", doc)
    reference = re.search(r"is equivalent to\s*\.\. code-block::\s*ops\.(\w+)\(|:func:`mindspore\.ops\.(\w+)`", doc)
    if not listed and reference:
        function_name = reference.group(1) or reference.group(2)
        # an `_ext` function (MatMulExt's matmul_ext) is documented as the public function it implements
        for candidate in (function_name, function_name.removesuffix("_ext")):
            doc = doc_of((mindspore.ops, mindspore.mint, function, gen_ops_def), candidate)
            listed = re.search(r"Supported Platforms:\s*\n((?:[ \t]*``\w+``)+)", doc)
            if listed:
                break
    return re.findall(r"``(\w+)``", listed.group(1)) if listed else None


def load_table() -> dict:
    from .op_platforms import OP_PLATFORMS

    return dict(OP_PLATFORMS)


def write_table(table: dict) -> None:
    rows = "".join(f"    {name!r}: {platforms!r},\n" for name, platforms in sorted(table.items()))
    with open(TABLE_PATH, "w") as handle:
        handle.write(f'{TABLE_HEADER}\n\nOP_PLATFORMS = {{\n{rows}}}\n')


TABLE_HEADER = ('"""Every primitive the compiled graphs use → the platforms its MindSpore 2.7.0 documentation lists under\n'
                '"Supported Platforms" (None: documented for no platform). Written by `python -m ms_ptuning.native.audit\n'
                '--add_new` from the installed MindSpore\'s docstrings (the API pages\' text); checked by tests/test_graph_audit.py."""')


def problems(inventory: collections.Counter, table: dict, cpu_choice: bool = False) -> list:
    """Why the graph would not run on Ascend or GPU as it runs here (empty if it would). `cpu_choice`: the graph
    is the CPU's choice (`device/kernels.py`), which may hold the CPU's kernels (`CPU_KERNELS`)."""
    found = []
    for name in sorted(inventory):
        if name.startswith(CPU_KERNELS):
            if not cpu_choice:
                found.append(f"{name}: a CPU kernel in a graph built for Ascend and GPU ({inventory[name]}×)")
        elif name in HOST_ONLY:
            found.append(f"{name}: a host-only node ({inventory[name]}×)")
        elif name in STATEFUL_RANDOM:
            found.append(f"{name}: a stateful random kernel ({inventory[name]}×)")
        elif name not in table:
            found.append(f"{name}: not in {os.path.basename(TABLE_PATH)} (look up its Supported Platforms, "
                         f"then python -m ms_ptuning.native.audit --add_new)")
        elif table[name] is not None and not set(REQUIRED_PLATFORMS) <= set(table[name]):
            found.append(f"{name}: documented for {', '.join(table[name])} only")
    return found


# ---- building the graphs --------------------------------------------------------------------------------
TINY = {
    "bert": dict(model_type="bert", vocab_size=64, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                 intermediate_size=32, max_position_embeddings=32),
    "roberta": dict(model_type="roberta", vocab_size=64, hidden_size=16, num_hidden_layers=1,
                    num_attention_heads=2, intermediate_size=32, max_position_embeddings=34, pad_token_id=1),
    "gpt2": dict(model_type="gpt2", vocab_size=64, n_embd=16, n_layer=1, n_head=2, n_positions=32),
}
MODES = {
    "prefix": dict(mode="prefix", pre_seq_len=2),
    "prefix-projection": dict(mode="prefix", pre_seq_len=2, prefix_projection=True, prefix_hidden_size=8),
    "prompt": dict(mode="prompt", pre_seq_len=2),
    "prompt-lstm": dict(mode="prompt", pre_seq_len=2, prompt_encoder_type="lstm"),
    "finetune": dict(mode="finetune"),
}
# "<case>+devices": the graphs as built for Ascend and GPU (device.kernels), compiled here
DEVICES = "+devices"
CASES = tuple(f"{model}-{mode}{choice}" for model in TINY for mode in MODES for choice in ("", DEVICES))


def compiled_graphs(case: str) -> dict:
    """label → compiled Cell for one case ("bert-prefix", "bert-prefix+devices", ...): the train step (dropout
    on), the eval forward, and for GPT-2 the decoding prefill and step."""
    from ..backend import seed_everything  # first: mindnlp before transformers

    import numpy as np
    import transformers

    from ..backbones import build_backbone
    from ..config import PTuningConfig
    from ..distributed import DataParallel
    from ..execution import choose_backend
    from ..generation import GenerationConfig, generate
    from ..models import HEADS
    from ..training import TrainingArguments
    from ..training.precision import LossScaler
    from ..weights import trainable_weights
    from ..device import kernels

    model_type, mode = case.removesuffix(DEVICES).split("-", 1)
    seed_everything(0)
    backbone = build_backbone(transformers.AutoConfig.for_model(**TINY[model_type]))
    backend = choose_backend("graph", model_type)
    head = "causal_lm" if model_type == "gpt2" else "sequence_classification"
    with kernels.forced(not cpu_choice(case)):
        model = HEADS[head](backend.backbone(backbone), PTuningConfig(**MODES[mode]))
    args = TrainingArguments(output_dir=tempfile.mkdtemp(prefix="audit-"), per_device_train_batch_size=2,
                             per_device_eval_batch_size=2, report_to=[], seed=0)
    steps = backend.steps(model, trainable_weights(model), args, LossScaler("none"), DataParallel())
    input_ids = np.arange(2, 14, dtype=np.int64).reshape(2, 6)
    batch = {"input_ids": input_ids, "attention_mask": np.ones_like(input_ids),
             "labels": input_ids.copy() if head == "causal_lm" else np.array([0, 1])}
    steps.train_step([batch], [0], 1e-3)
    steps.eval_step({name: values for name, values in batch.items() if name != "labels"})
    graphs = {f"train {label}": cell for label, cell in _named(steps.step_graphs)}
    graphs.update({f"eval {label}": cell for label, cell in _named(steps.forward_graphs)})
    if head == "causal_lm":
        generate(model, [[3, 4, 5]], GenerationConfig(max_new_tokens=2, eos_token_id=63, batch_size=1))
        for prefill, step in model.__dict__["_static_decoding_cells"].values():
            graphs.update({"decode prefill": prefill, "decode step": step})
    return graphs


def _named(cells: dict):
    for index, cell in enumerate(cells.values()):
        yield (str(index) if len(cells) > 1 else type(cell).__name__), cell


def cpu_choice(case: str) -> bool:
    """Whether `case`'s graphs are built with the CPU's choice of kernels (`compiled_graphs`)."""
    from ..device import kernels

    return not (case.endswith(DEVICES) or kernels.device_kernels())


def audit(cases=CASES) -> dict:
    """(case, graph label) → primitive inventory, for every case."""
    return {(case, label): graph_primitives(cell) for case in cases for label, cell in compiled_graphs(case).items()}


def format_inventory(inventory: collections.Counter) -> str:
    return "\n".join(f"  {name:<28} {count}" for name, count in sorted(inventory.items(), key=lambda kv: (-kv[1], kv[0])))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cases", default=",".join(CASES), help=f"comma-separated, from: {', '.join(CASES)}")
    parser.add_argument("--add_new", action="store_true",
                        help="add the primitives the table lacks, with the installed MindSpore's documented platforms")
    args = parser.parse_args(argv)
    inventories = audit(args.cases.split(","))
    table = load_table()
    if args.add_new:
        used = set().union(*inventories.values())
        table.update({name: documented_platforms(name) for name in sorted(used - set(table))})
        write_table(table)
    failures = 0
    for (case, label), inventory in inventories.items():
        found = problems(inventory, table, cpu_choice(case))
        failures += bool(found)
        cpu = sorted(name for name in inventory if name.startswith(CPU_KERNELS))
        verdict = "" if found else ", all documented for Ascend and GPU" + (
            f" but the CPU's choice of kernels {', '.join(cpu)}" if cpu else "")
        print(f"{case} {label}: {sum(inventory.values())} primitive nodes, {len(inventory)} kinds{verdict}")
        print(format_inventory(inventory))
        for problem in found:
            print(f"  PROBLEM {problem}")
    print(f"{len(inventories) - failures} graphs passed, {failures} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

"""The graph audit (ms_ptuning/native/audit.py): the train, eval and decode graphs of every native backbone
(BERT, RoBERTa, GPT-2) in prefix, prompt (LSTM encoder) and fine-tuning mode hold no host-only node, no
stateful random kernel and only primitives MindSpore 2.7 documents for Ascend and GPU (or documents for no
platform: graph plumbing, gradient ops); the checked-in table agrees with MindSpore's docstrings; and the
audit does catch a pyfunc op, a None returned from a graph (PyExecute), a random kernel, a GPU/CPU-only op
and an op nobody has looked up."""

import collections

import numpy as np
import pytest
from mindspore import Tensor, nn, ops

from ms_ptuning.backend import graph_mode
from ms_ptuning.native import audit

# every backbone in every mode family; plain prompt and prefix projection use a subset of these primitives;
# and the graphs built for Ascend and GPU (device.kernels): BERT's fused q/k/v trained, GPT-2's GeLU and decoding
CASES = tuple(f"{model}-{mode}" for model in audit.TINY for mode in ("prefix", "prompt-lstm", "finetune")) + (
    f"bert-prefix{audit.DEVICES}", f"bert-finetune{audit.DEVICES}", f"gpt2-prefix{audit.DEVICES}")


@pytest.fixture(scope="module")
def inventories():
    return audit.audit(CASES)


def test_every_graph_runs_on_ascend_and_gpu_as_documented(inventories):
    table = audit.load_table()
    labels = {label for _, label in inventories}
    assert {"train Step", "eval ModelCall", "decode prefill", "decode step"} <= labels, labels
    problems = {(case, label): audit.problems(inventory, table, audit.cpu_choice(case))
                for (case, label), inventory in inventories.items()}
    assert not any(problems.values()), {key: found for key, found in problems.items() if found}
    bert_prefix = inventories[f"bert-prefix{audit.DEVICES}", "train Step"]
    print(f"\nprimitives of BERT prefix training, built for Ascend and GPU ({sum(bert_prefix.values())} nodes):")
    print(audit.format_inventory(bert_prefix))
    # the devices' dropout masks are integer arithmetic in the graph, their GELU erf; the CPU's come from its kernels
    assert {"BitwiseXor", "RightShift", "GreaterEqual", "Erf"} <= set(bert_prefix)
    assert not any(name.startswith(audit.CPU_KERNELS) for name in bert_prefix)
    cpu_prefix = inventories["bert-prefix", "train Step"]
    masks, *others = (f"{audit.CPU_KERNELS}{name}" for name in (
        "DropoutMasks", "BiasGelu", "BiasGeluGrad", "LayerNorm", "ResidualLayerNorm", "ResidualLayerNormGrad",
        "PrefixAttentionDropout", "PrefixAttentionGrad"))
    assert cpu_prefix[masks] >= 2 and all(cpu_prefix[name] >= 1 for name in others)
    # attention is one kernel each way: no heads split per layer, no batched products
    assert not {"RightShift", "Erf", "Softmax", "Rsqrt", "Custom", "Split", "BatchMatMul"} & set(cpu_prefix)
    # outside training the linear layers' products are the CPU's GEMM kernel, and attention its kernel
    cpu_eval = inventories["bert-prefix", "eval ModelCall"]
    assert all(cpu_eval[f"{audit.CPU_KERNELS}{name}"] >= 1 for name in ("MatMulNT", "PrefixAttention"))
    assert not {"MatMul", "BiasAdd", "BatchMatMul", "Split", "Stack"} & set(cpu_eval), cpu_eval
    # and the CPU's kernels in a graph for the devices would be found
    found = audit.problems(cpu_prefix, table)
    assert any(problem.startswith(f"{masks}: a CPU kernel in a graph built for Ascend") for problem in found), found


def test_the_platform_table_is_mindspores_documentation():
    table = audit.load_table()
    assert {name: audit.documented_platforms(name) for name in table} == table


class PyfuncCell(nn.Cell):
    def __init__(self):
        super().__init__()
        self.host = ops.Custom(lambda x: x * 2, out_shape=lambda x: x, out_dtype=lambda x: x, func_type="pyfunc")

    def construct(self, x):
        return self.host(x)


class NoneCell(nn.Cell):
    def construct(self, x):
        return None, ops.mul(x, 2.0)


class RandomCell(nn.Cell):
    def __init__(self):
        super().__init__()
        self.dropout = ops.Dropout(keep_prob=0.9)

    def construct(self, x):
        return self.dropout(x)[0]


@pytest.mark.parametrize("cell, expected", [(PyfuncCell, "Custom: a host-only node"),
                                            (NoneCell, "PyExecute: a host-only node"),
                                            (RandomCell, "Dropout: a stateful random kernel")])
def test_the_audit_catches_what_would_not_run_on_the_device(cell, expected):
    graph = cell()
    with graph_mode():
        graph(Tensor(np.ones(4, np.float32)))
    assert any(problem.startswith(expected) for problem in audit.problems(audit.graph_primitives(graph),
                                                                          audit.load_table())), expected


def test_ops_documented_without_ascend_or_gpu_and_ops_not_looked_up_fail():
    # Range (behind ops.arange) is documented for GPU and CPU only
    assert audit.documented_platforms("Range") == ["GPU", "CPU"]
    found = audit.problems(collections.Counter({"Range": 1, "BrandNewOp": 2}),
                           {"Range": audit.documented_platforms("Range")})
    assert found == ["BrandNewOp: not in op_platforms.py (look up its Supported Platforms, then "
                     "python -m ms_ptuning.native.audit --add_new)", "Range: documented for GPU, CPU only"]

"""Parameter-holding Cells of the native backbones, with Hugging Face's parameter names and layouts.

Their parameters start uninitialised (MindSpore allocates an initializer's tensor only when it is first
used): `convert.to_native` moves the loaded model's weights into them one tensor at a time, so building a
native backbone never holds a second copy of the weights. Used without conversion they hold zeros.

`compute_dtype` (None: float32) is set by `native.precision.set_compute_dtype` for mixed precision: Linear and
Conv1D multiply in it; every Cell hands on float32 whatever dtype its weights are stored in.
"""

from mindspore import Parameter, nn, ops
from mindspore import dtype as mstype
from mindspore.common.initializer import initializer

from . import functional as F
from ..device import cpu_kernels
from ..device.kernels import device_kernels

_MATMUL_NT = ops.MatMul(transpose_b=True)
_MATMUL = ops.MatMul()


def empty_parameter(shape: tuple, name: str) -> Parameter:
    return Parameter(initializer("zeros", shape, mstype.float32), name=name)


class Embedding(nn.Cell):
    """torch's nn.Embedding: weight (num, dim); the row `padding_idx` gets no gradient, as in torch."""

    compute_dtype = None

    def __init__(self, num_embeddings: int, embedding_dim: int, padding_idx: int = None):
        super().__init__()
        self.padding_idx = padding_idx
        self.device_kernels = device_kernels()
        self.weight = empty_parameter((num_embeddings, embedding_dim), "weight")

    def construct(self, indices):
        rows = self.float32(ops.gather(self.weight, indices, 0))  # (..., dim)
        if self.padding_idx is None:
            return rows
        # the same values (rows − rows is exactly 0); the gradient reaches the table only through the rows of
        # other ids; the 1/0 column copied out to the rows' shape on CPU, broadcast by the Mul on the devices
        keep = F.broadcast(ops.expand_dims(ops.cast(ops.ne(indices, self.padding_idx), rows.dtype), -1), rows,
                           self.device_kernels)
        constant = ops.stop_gradient(rows)
        return ops.add(constant, ops.mul(ops.sub(rows, constant), keep))

    def rows(self, start: int, count: int):
        """Rows start … start+count−1, (count, dim): the lookup of a run of consecutive ids, without the gather."""
        return self.float32(ops.narrow(self.weight, 0, start, count))

    def float32(self, rows):
        """Rows of a table stored in float16 (a frozen one under mixed precision) as float32."""
        return rows if self.compute_dtype is None else ops.cast(rows, mstype.float32)


class Linear(nn.Cell):
    """torch's nn.Linear: weight (out, in), bias (out,) unless `bias=False`.

    On CPU in float32, outside training, the product and its bias are one kernel of ms_ptuning's (`F.CpuMatMul`,
    oneDNN's GEMM on bands of the output): eval, predict and decode graphs. Training takes MatMul: MindSpore
    copies every weight handed to a Cell with its own backward (BERT-base prefix: +400 MB and ~100 ms of copies
    per step, more than the faster GEMM saves), and MatMul's registered backward copies nothing."""

    compute_dtype = None
    weight_transposed = True  # weight (out, in), multiplied transposed; GPT-2's Conv1D stores (in, out)

    def __init__(self, in_features: int, out_features: int, bias: bool = True):
        super().__init__()
        shape = (out_features, in_features) if self.weight_transposed else (in_features, out_features)
        self.weight = empty_parameter(shape, "weight")
        self.bias = empty_parameter((out_features,), "bias") if bias else None
        self.out_features = out_features
        self.matmul = _MATMUL_NT if self.weight_transposed else _MATMUL
        self.cpu_product, self.cpu_linear = F.cpu_matmuls(self.weight_transposed, device_kernels())

    def cpu_kernel_for(self, x) -> bool:
        """Whether the product of `x` runs the CPU's GEMM kernel (read when a graph compiles)."""
        return (self.cpu_product is not None and not self.training and self.compute_dtype is None
                and x.dtype == mstype.float32)

    def construct(self, x):
        if self.bias is None:
            return self.product(x)
        if not self.cpu_kernel_for(x):
            return F.bias_added(self.matmul, x, self.weight, self.bias, self.out_features, self.compute_dtype)
        rows = self.cpu_linear(x if len(x.shape) == 2 else F.flatten_rows(x), self.weight, self.bias)
        return rows if len(x.shape) == 2 else ops.reshape(rows, x.shape[:-1] + (self.out_features,))

    def product(self, x):
        """x · weight(ᵀ) without the bias."""
        rows = x if len(x.shape) == 2 else F.flatten_rows(x)
        if self.cpu_kernel_for(x):
            product = self.cpu_product(rows, self.weight)
        else:
            product = F.low_precision_product(self.matmul, rows, self.weight, self.compute_dtype)
        return product if len(x.shape) == 2 else ops.reshape(product, x.shape[:-1] + (self.out_features,))


class Conv1D(Linear):
    """Hugging Face's GPT-2 Conv1D, a linear layer stored transposed: weight (in, out), bias (out,)."""

    weight_transposed = False

    def __init__(self, in_features: int, out_features: int):
        super().__init__(in_features, out_features)


class LayerNorm(nn.Cell):
    """torch's nn.LayerNorm over the last axis: weight, bias (hidden,); computed in float32 always.

    With the devices' kernels (`kernels.device_kernels`) MindSpore's LayerNorm kernel (2 launches with its
    backward); on CPU ms_ptuning's own kernel (`F.CpuLayerNorm`, one launch each way), or where it could not be
    built the elementwise composition (~39 launches): MindSpore's kernel's backward made a BERT-base prefix
    train step 6-8% slower there (measured on a shared machine)."""

    compute_dtype = None

    def __init__(self, hidden_size: int, eps: float):
        super().__init__()
        self.eps = eps
        self.use_kernel = device_kernels()
        self.cpu_kernel = F.CpuLayerNorm(eps) if not self.use_kernel and cpu_kernels.available() else None
        self.weight = empty_parameter((hidden_size,), "weight")
        self.bias = empty_parameter((hidden_size,), "bias")

    def construct(self, x):
        weight, bias = self.weight, self.bias
        if self.compute_dtype is not None:
            weight, bias = ops.cast(weight, mstype.float32), ops.cast(bias, mstype.float32)
        if self.cpu_kernel is not None and x.dtype == mstype.float32:
            return self.cpu_kernel(x, weight, bias)
        return F.layer_norm(x, weight, bias, self.eps, self.use_kernel)

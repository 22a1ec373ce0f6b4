"""Parameter-holding Cells of the native backbones, with Hugging Face's parameter names and layouts.

Their parameters start uninitialised (MindSpore allocates an initializer's tensor only when it is first
used): `convert.to_native` moves the loaded model's weights into them one tensor at a time, so building a
native backbone never holds a second copy of the weights. Used without conversion they hold zeros.
"""

from mindspore import Parameter, nn, ops
from mindspore import dtype as mstype
from mindspore.common.initializer import initializer

from . import functional as F


def empty_parameter(shape: tuple, name: str) -> Parameter:
    return Parameter(initializer("zeros", shape, mstype.float32), name=name)


class Embedding(nn.Cell):
    """torch's nn.Embedding: weight (num, dim); the row `padding_idx` gets no gradient, as in torch."""

    def __init__(self, num_embeddings: int, embedding_dim: int, padding_idx: int = None):
        super().__init__()
        self.padding_idx = padding_idx
        self.weight = empty_parameter((num_embeddings, embedding_dim), "weight")

    def construct(self, indices):
        rows = ops.gather(self.weight, indices, 0)  # (..., dim)
        if self.padding_idx is None:
            return rows
        # the same values; the gradient reaches the table only through the rows of other ids
        keep = F.broadcast(ops.expand_dims(ops.cast(ops.ne(indices, self.padding_idx), rows.dtype), -1), rows)
        return ops.add(ops.mul(rows, keep), ops.mul(ops.stop_gradient(rows), ops.sub(1.0, keep)))

    def rows(self, start: int, count: int):
        """Rows start … start+count−1, (count, dim): the lookup of a run of consecutive ids, without the gather."""
        return ops.narrow(self.weight, 0, start, count)


class Linear(nn.Cell):
    """torch's nn.Linear: weight (out, in), bias (out,)."""

    def __init__(self, in_features: int, out_features: int):
        super().__init__()
        self.weight = empty_parameter((out_features, in_features), "weight")
        self.bias = empty_parameter((out_features,), "bias")

    def construct(self, x):
        return F.linear(x, self.weight, self.bias)


class Conv1D(nn.Cell):
    """Hugging Face's GPT-2 Conv1D: weight (in, out), bias (out,)."""

    def __init__(self, in_features: int, out_features: int):
        super().__init__()
        self.weight = empty_parameter((in_features, out_features), "weight")
        self.bias = empty_parameter((out_features,), "bias")

    def construct(self, x):
        return F.conv1d(x, self.weight, self.bias)


class LayerNorm(nn.Cell):
    """torch's nn.LayerNorm over the last axis: weight, bias (hidden,)."""

    def __init__(self, hidden_size: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = empty_parameter((hidden_size,), "weight")
        self.bias = empty_parameter((hidden_size,), "bias")

    def construct(self, x):
        return F.layer_norm(x, self.weight, self.bias, self.eps)

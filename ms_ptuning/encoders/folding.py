"""Encoders whose output depends on their weights alone: compiled while training, folded after it."""

import mindspore
from mindspore import Tensor, nn

from ..device.jit import function_jit_level
from ..layers import LSTM


class FoldableEncoder(nn.Cell):
    """An encoder whose output depends on its weights alone.

    Compiled: `encode()` runs as one MindSpore graph (`mindspore.jit`) when the encoder has an MLP worth
    compiling (`compiles`): in PyNative mode every op is dispatched on its own (the LSTM compiles its steps
    instead, see layers.LSTM). Outputs and gradients equal the op-by-op ones. Inside a GRAPH_MODE Cell (the
    graph backend's compiled steps) the jitted function is simply part of the enclosing graph. Folded:
    `fold()` computes the output once and every later call reuses it, skipping the MLP/LSTM: inference only
    (a folded encoder gets no gradients). A graph compiled before `fold()` keeps computing the encoder: fold
    before the first compiled call (the graph backend's predictors do).
    """

    compiles = False  # instances with an MLP switch it on (has_network); compile_encoders() switches it

    def __init__(self):
        super().__init__()
        self.folded = None
        # built here, not on first use: a compiled graph can call it but cannot assign attributes
        self.compiled_encode = mindspore.jit(self.encode, jit_level=function_jit_level())

    def encode(self):
        """The encoder output computed from the weights."""
        raise TypeError(f"{type(self).__name__} must define encode()")

    def has_network(self) -> bool:
        """Whether encode() runs more than a table lookup (an MLP or LSTM), so compiling it pays."""
        raise TypeError(f"{type(self).__name__} must define has_network()")

    def fold(self) -> None:
        self.folded = Tensor(self.encode().asnumpy())

    def unfold(self) -> None:
        self.folded = None

    def output(self):
        if self.folded is not None:
            return self.folded
        if not self.compiles:
            return self.encode()
        return self.compiled_encode()


def fold_encoders(model, fold: bool = True) -> int:
    """Fold (or unfold) every prefix/prompt encoder inside `model`; returns how many there were."""
    encoders = [cell for _, cell in model.cells_and_names() if isinstance(cell, FoldableEncoder)]
    for encoder in encoders:
        encoder.fold() if fold else encoder.unfold()
    return len(encoders)


def compile_encoders(model, enabled: bool = True) -> None:
    """Run the encoders inside `model` compiled (the default: their MLPs as one graph, LSTM steps one graph
    each) or op by op (PyNative: no compile time, which only pays off over a few calls)."""
    for _, cell in model.cells_and_names():
        if isinstance(cell, FoldableEncoder):
            cell.compiles = enabled and cell.has_network()
        if isinstance(cell, LSTM):
            cell.compiled_steps = enabled

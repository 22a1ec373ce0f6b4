"""Folding: once training is over, a prefix/prompt encoder's output is a constant."""

from mindspore import Tensor, nn


class FoldableEncoder(nn.Cell):
    """An encoder whose output depends on its weights alone. `fold()` computes it once and every later call
    reuses it, skipping the reparameterization MLP/LSTM: inference only (a folded encoder gets no gradients).
    """

    def __init__(self):
        super().__init__()
        self.folded = None

    def encode(self):
        """The encoder output computed from the weights."""
        raise TypeError(f"{type(self).__name__} must define encode()")

    def fold(self) -> None:
        self.folded = Tensor(self.encode().asnumpy())

    def unfold(self) -> None:
        self.folded = None

    def output(self):
        return self.folded if self.folded is not None else self.encode()


def fold_encoders(model, fold: bool = True) -> int:
    """Fold (or unfold) every prefix/prompt encoder inside `model`; returns how many there were."""
    encoders = [cell for _, cell in model.cells_and_names() if isinstance(cell, FoldableEncoder)]
    for encoder in encoders:
        encoder.fold() if fold else encoder.unfold()
    return len(encoders)

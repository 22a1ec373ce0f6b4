"""Recomputed layer activations on the native backbones (`--gradient_checkpointing`, Hugging Face's
TrainingArguments name), through MindSpore's `Cell.recompute()`.

Each transformer layer is marked once; when GRAPH_MODE compiles the gradient, the backward pass runs that
layer's forward again instead of keeping its intermediate activations (softmax probabilities, SiLU/GELU
inputs, norm statistics) alive from the forward pass: about one more forward pass of the layers for the
activation memory of all but the layer being differentiated. A layer's output is kept (MindSpore's default),
so layer l + 1 starts its recomputation from it. The numbers are the same with dropout too: its masks are
a pure function of the step key (`layers.keep_mask`), so the recomputed forward draws the same ones.

GRAPH_MODE only: marked in PyNative, `Cell.recompute` would also wrap each layer's op-by-op call, so the
marking is done in GRAPH_MODE (the step engine's graphs read the flag when they compile).
"""

import mindspore


def recompute_layers(backbone) -> None:
    """Mark every transformer layer of a native backbone (`backbone.transformer_layers`) for recomputation."""
    layers = getattr(backbone, "transformer_layers", None)
    if layers is None:
        raise ValueError(f"gradient_checkpointing: {type(backbone).__name__} is not a native backbone; "
                         "recomputation needs the graph backend (--backend graph: bert, roberta, gpt2, llama, qwen2)")
    previous = mindspore.get_context("mode")
    mindspore.set_context(mode=mindspore.GRAPH_MODE)
    try:
        for layer in layers:
            layer.recompute()
    finally:
        mindspore.set_context(mode=previous)

"""Mixed precision on the native backbones (`--mixed_precision fp16|bf16`), as the eager backend does it.

MatMuls (the linear layers and the two attention products) run in the low dtype; LayerNorm, RMSNorm, softmax,
GELU/SiLU, the rotary phases, the residual stream, the outputs and the losses stay float32 (autocast's rule).
The frozen weights are stored in the low dtype (they never update, so they need no float32 master copy),
except the input word embedding when the LM/MLM head is tied to it (GPT-2's LM head, BERT's MLM decoder,
Qwen2's tied head), because that head multiplies by it in float32. Trainable weights (everything when
fine-tuning) stay float32 and are cast for each product.
"""

import mindspore

INPUT_EMBEDDINGS = ("embeddings.word_embeddings.weight", "wte.weight", "embed_tokens.weight")


def keeps_float32(name: str, config) -> bool:
    """Whether a frozen weight stays float32: the input embedding, when a head is tied to it."""
    return name in INPUT_EMBEDDINGS and getattr(config, "tie_word_embeddings", True)


def set_compute_dtype(backbone, dtype) -> None:
    """Make `backbone` (a native Cell, its trainable weights already marked) compute in `dtype`: store its
    frozen weights in it and tell every Cell that multiplies or converts to use it."""
    if dtype not in (mindspore.float16, mindspore.bfloat16):
        raise ValueError(f"compute_dtype must be float16 or bfloat16, got {dtype}")
    for name, parameter in backbone.parameters_and_names():
        if not parameter.requires_grad and not keeps_float32(name, backbone.config):
            parameter.set_dtype(dtype)
    for _, cell in backbone.cells_and_names():
        if hasattr(type(cell), "compute_dtype"):
            cell.compute_dtype = dtype
    backbone.compute_dtype = dtype

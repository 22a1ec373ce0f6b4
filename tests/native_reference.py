"""The torch side of tests/test_native_backbones.py: real torch + transformers, run as its own process
(`python tests/native_reference.py WORKDIR...`), never importing mindnlp.

Each WORKDIR holds `spec.json` ({"config": HF config dict, "variant": "plain" | "prefix" | "embeds"}),
`weights.safetensors` (the backbone's Hugging Face state dict) and `batch.safetensors`. The loss is
Σ sequence_output · r_seq + Σ pooled · r_pool (random projections, so every output element has a gradient);
written to `reference.safetensors`: `sequence`, `pooled` (when there is a pooler) and `grad.<name>` for the
prefix (`grad.prefix`, (2L, B, heads, P, d)), the prompt embeddings (`grad.prompts`, (B, P, H)) and, in
the plain variant, every weight (finetune).
"""

import json
import os
import sys

import torch
import transformers
from safetensors.torch import load_file, save_file
from transformers.cache_utils import DynamicCache


def forward(model, batch: dict, variant: str, leaves: dict):
    """The backbone's outputs for one variant: plain ids, a per-layer prefix, or prompts prepended."""
    inputs = {name: batch[name] for name in ("attention_mask", "token_type_ids", "position_ids") if name in batch}
    if variant == "prefix":
        prefix = leaves["prefix"]
        cache = DynamicCache.from_legacy_cache(tuple((prefix[2 * i], prefix[2 * i + 1])
                                                     for i in range(prefix.shape[0] // 2)))
        return model(input_ids=batch["input_ids"], past_key_values=cache, **inputs)
    if variant == "embeds":
        embeds = torch.cat([leaves["prompts"], model.get_input_embeddings()(batch["input_ids"])], dim=1)
        return model(inputs_embeds=embeds, **inputs)
    return model(input_ids=batch["input_ids"], **inputs)


def run(workdir: str) -> None:
    with open(os.path.join(workdir, "spec.json")) as handle:
        spec = json.load(handle)
    config = transformers.AutoConfig.for_model(**spec["config"])
    model = transformers.AutoModel.from_config(config, attn_implementation="eager")
    model.load_state_dict(load_file(os.path.join(workdir, "weights.safetensors")), strict=True)
    model.eval()
    batch = load_file(os.path.join(workdir, "batch.safetensors"))
    leaves = {name: batch.pop(name).requires_grad_(True) for name in ("prefix", "prompts") if name in batch}
    r_seq, r_pool = batch.pop("r_seq"), batch.pop("r_pool", None)
    output = forward(model, batch, spec["variant"], leaves)
    pooled = getattr(output, "pooler_output", None)
    loss = (output.last_hidden_state * r_seq).sum()
    if pooled is not None:
        loss = loss + (pooled * r_pool).sum()
    loss.backward()
    result = {"sequence": output.last_hidden_state.detach()}
    if pooled is not None:
        result["pooled"] = pooled.detach()
    result.update({f"grad.{name}": leaf.grad for name, leaf in leaves.items()})
    if spec["variant"] == "plain":
        result.update({f"grad.{name}": param.grad for name, param in model.named_parameters()})
    save_file({name: tensor.contiguous() for name, tensor in result.items()},
              os.path.join(workdir, "reference.safetensors"))


if __name__ == "__main__":
    torch.set_num_threads(1)
    for directory in sys.argv[1:]:
        run(directory)

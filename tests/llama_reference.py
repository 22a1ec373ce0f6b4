"""The torch side of tests/test_llama_parity.py: transformers' own `LlamaForCausalLM` / `Qwen2ForCausalLM` in real
torch, run as its own process (`python tests/llama_reference.py WORKDIR...`), never importing mindnlp.

Each WORKDIR holds `spec.json` ({"config": HF config dict, "mode": "prefix" | "prompt" | "finetune",
"generate": [{"prompts", "max_new_tokens", "eos_token_id", "pad_token_id", "num_beams"}, ...]}),
`weights.safetensors` (the *ForCausalLM state dict, plus `prefix` (P, 2·L·kv_heads·head_dim) or `prompts`
(P, H), the virtual tokens' table) and `batch.safetensors` (input_ids, attention_mask, labels).

The prefix enters as a past of length P (a DynamicCache holding, for layer l, rows 2l and 2l+1 of the table
laid out (2L, B, kv_heads, P, head_dim), peft's layout), the attention mask grows by P ones in front and
transformers numbers the real tokens from P; prompts are prepended to the input embeddings. The loss is
transformers' own (`labels=`; in prompt mode the prompts' labels are -100). Written to
`reference.safetensors`: `logits` (B, T, V) of the real tokens, `loss`, `grad.<name>` of what trains (the
table, or every weight in finetune mode); to `generations.json` one list of generated ids per generate entry
(transformers' `generate`, prompts left-padded, the stop token and what follows it cut). A spec with a
"train" entry (TrainingArguments values) instead trains the prefix (`train`).
"""

import json
import os
import sys

import torch
import transformers
from safetensors.torch import load_file, save_file
from transformers.cache_utils import DynamicCache


def prefix_cache(table, config, rows: int) -> DynamicCache:
    """The (P, 2·L·kv·d) table → a DynamicCache of L (key, value) pairs, each (rows, kv_heads, P, head_dim)."""
    kv_heads = config.num_key_value_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    length = table.shape[0]
    past = table.unsqueeze(0).expand(rows, -1, -1).reshape(rows, length, 2 * config.num_hidden_layers, kv_heads,
                                                             head_dim)
    past = past.permute(2, 0, 3, 1, 4)  # (2L, rows, kv_heads, P, d)
    return DynamicCache.from_legacy_cache(tuple((past[2 * i], past[2 * i + 1])
                                                for i in range(config.num_hidden_layers)))


def with_virtual_ones(mask, count: int):
    return torch.cat([torch.ones(mask.shape[0], count, dtype=mask.dtype), mask], dim=1)


def forward(model, mode: str, tables: dict, batch: dict):
    """(logits of the real tokens (B, T, V), transformers' loss)."""
    ids, mask, labels = batch["input_ids"], batch["attention_mask"], batch["labels"]
    if mode == "prefix":
        table = tables["prefix"]
        output = model(input_ids=ids, attention_mask=with_virtual_ones(mask, table.shape[0]),
                       past_key_values=prefix_cache(table, model.config, ids.shape[0]), labels=labels)
        return output.logits, output.loss
    if mode == "prompt":
        prompts = tables["prompts"]
        count = prompts.shape[0]
        embeds = torch.cat([prompts.unsqueeze(0).expand(ids.shape[0], -1, -1), model.get_input_embeddings()(ids)], 1)
        ignored = torch.full((ids.shape[0], count), -100, dtype=labels.dtype)
        output = model(inputs_embeds=embeds, attention_mask=with_virtual_ones(mask, count),
                       labels=torch.cat([ignored, labels], 1))
        return output.logits[:, count:], output.loss
    output = model(input_ids=ids, attention_mask=mask, labels=labels)
    return output.logits, output.loss


def generate(model, mode: str, tables: dict, request: dict) -> list:
    """transformers' `generate` (greedy or beam search) from left-padded prompts with the same virtual tokens."""
    prompts, pad, eos = request["prompts"], request["pad_token_id"], request["eos_token_id"]
    width, beams = max(map(len, prompts)), request["num_beams"]
    ids = torch.tensor([[pad] * (width - len(p)) + p for p in prompts])
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
    options = dict(max_new_tokens=request["max_new_tokens"], num_beams=beams, do_sample=False, eos_token_id=eos,
                   pad_token_id=pad, early_stopping="never" if beams > 1 else False, length_penalty=1.0)
    if mode == "prefix":  # the prefix is a past of length P: P placeholder ids stand for it in input_ids
        table = tables["prefix"]
        count = table.shape[0]
        placeholders = torch.full((len(prompts), count), pad)
        out = model.generate(input_ids=torch.cat([placeholders, ids], 1), attention_mask=with_virtual_ones(mask, count),
                             past_key_values=prefix_cache(table, model.config, len(prompts) * beams), **options)
        out = out[:, count + width:]
    elif mode == "prompt":
        prompt_table = tables["prompts"]
        embeds = torch.cat([prompt_table.unsqueeze(0).expand(len(prompts), -1, -1),
                            model.get_input_embeddings()(ids)], 1)
        out = model.generate(inputs_embeds=embeds, attention_mask=with_virtual_ones(mask, prompt_table.shape[0]),
                             **options)  # inputs_embeds only: the output holds the new tokens alone
    else:
        out = model.generate(input_ids=ids, attention_mask=mask, **options)[:, width:]
    generations = []
    for row in out.tolist():
        generations.append(row[:row.index(eos)] if eos in row else row)
    return generations


def train(model, table, workdir: str, settings: dict) -> None:
    """P-tuning v2 as a torch user runs it on transformers' model: the prefix table alone trains, with
    `torch.optim.AdamW` (weight decay on the table), `transformers.get_scheduler` and `clip_grad_norm_`, over
    the micro-batches in `order` (steps, accumulation, batch). Writes reference_training.safetensors: the loss
    (summed micro-batch losses / accumulation) and gradient norm before clipping per step, the final table."""
    arrays = load_file(os.path.join(workdir, "training_data.safetensors"))
    columns = {name[len("data."):]: value for name, value in arrays.items() if name.startswith("data.")}
    optimizer = torch.optim.AdamW([table], lr=settings["learning_rate"], eps=settings["adam_epsilon"],
                                  betas=(settings["adam_beta1"], settings["adam_beta2"]),
                                  weight_decay=settings["weight_decay"])
    scheduler = transformers.get_scheduler(settings["lr_scheduler_type"], optimizer,
                                           num_warmup_steps=settings["warmup_steps"],
                                           num_training_steps=len(arrays["order"]))
    accumulation = settings["gradient_accumulation_steps"]
    losses, norms = [], []
    for step_batches in arrays["order"]:
        step_loss = 0.0
        for indices in step_batches:
            _, loss = forward(model, "prefix", {"prefix": table}, {k: v[indices] for k, v in columns.items()})
            (loss / accumulation).backward()
            step_loss += float(loss.detach()) / accumulation
        norms.append(float(torch.nn.utils.clip_grad_norm_([table], settings["max_grad_norm"])))
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad()
        losses.append(step_loss)
    save_file({"loss": torch.tensor(losses, dtype=torch.float64), "grad_norm": torch.tensor(norms, dtype=torch.float64),
               "weight.prefix": table.detach().contiguous()}, os.path.join(workdir, "reference_training.safetensors"))


def run(workdir: str) -> None:
    with open(os.path.join(workdir, "spec.json")) as handle:
        spec = json.load(handle)
    config = transformers.AutoConfig.for_model(**spec["config"])
    model = transformers.AutoModelForCausalLM.from_config(config, attn_implementation="eager")
    weights = load_file(os.path.join(workdir, "weights.safetensors"))
    tables = {name: weights.pop(name) for name in ("prefix", "prompts") if name in weights}
    model.load_state_dict(weights, strict=not config.tie_word_embeddings)  # tied: lm_head.weight is embed_tokens
    model.eval()
    mode = spec["mode"]
    if "train" in spec:
        model.requires_grad_(False)
        train(model, tables["prefix"].requires_grad_(True), workdir, spec["train"])
        return
    batch = load_file(os.path.join(workdir, "batch.safetensors"))
    for table in tables.values():
        table.requires_grad_(True)
    if mode != "finetune":
        model.requires_grad_(False)
    logits, loss = forward(model, mode, tables, batch)
    loss.backward()
    result = {"logits": logits.detach(), "loss": loss.detach().reshape(1)}
    result.update({f"grad.{name}": table.grad for name, table in tables.items()})
    if mode == "finetune":
        result.update({f"grad.{name}": param.grad for name, param in model.named_parameters()})
    save_file({name: tensor.contiguous() for name, tensor in result.items()},
              os.path.join(workdir, "reference.safetensors"))
    with torch.no_grad():
        generations = [generate(model, mode, tables, request) for request in spec.get("generate", [])]
    with open(os.path.join(workdir, "generations.json"), "w") as handle:
        json.dump(generations, handle)


if __name__ == "__main__":
    torch.set_num_threads(1)
    for directory in sys.argv[1:]:
        run(directory)

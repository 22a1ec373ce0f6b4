"""The torch side of tests/test_eager_decoders.py: real transformers `AutoModelForCausalLM` wrapped by real peft
(`get_peft_model` with PREFIX_TUNING or PROMPT_TUNING), in its own process (`python
tests/eager_decoders_reference.py WORKDIR...`), never importing mindnlp.

Each WORKDIR holds the model directory ms_ptuning loaded (`model/`: config.json + model.safetensors),
`spec.json` ({"mode": "prefix" | "prompt", "num_virtual_tokens": P, "prompts": [...], "max_new_tokens",
"eos_token_id", "pad_token_id", "beam": bool}), `table.safetensors` (`table`: peft's prompt_encoder embedding, (P, 2·L·kv·d)
or (P, H)), `batch.safetensors` (input_ids, attention_mask, labels) and `peft/`, the adapter as `ms-ptuning
export --to peft` wrote it. Written: `reference.safetensors` (`logits` (B, T, V) of the real tokens, `loss`,
`grad.table`, `exported_logits`: the real tokens' logits of `PeftModel.from_pretrained(model, peft/)`) and
`generations.json` (peft's `generate`, greedy and with "beam" also beam search (3 beams), one prompt at a time,
the stop token and what follows it cut).
"""

import json
import os
import sys

import peft
import torch
import transformers
from safetensors.torch import load_file, save_file


def peft_model(workdir: str, spec: dict):
    model = transformers.AutoModelForCausalLM.from_pretrained(os.path.join(workdir, "model"),
                                                              attn_implementation="eager")
    count = spec["num_virtual_tokens"]
    if spec["mode"] == "prefix":
        config = peft.PrefixTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=count)
    else:
        config = peft.PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=count)
    model = peft.get_peft_model(model, config)
    table = model.prompt_encoder["default"].embedding.weight
    with torch.no_grad():
        table.copy_(load_file(os.path.join(workdir, "table.safetensors"))["table"])
    model.eval()
    return model, table


def run(workdir: str) -> None:
    with open(os.path.join(workdir, "spec.json")) as handle:
        spec = json.load(handle)
    count = spec["num_virtual_tokens"] if spec["mode"] == "prompt" else 0  # prompts' outputs are cut off
    model, table = peft_model(workdir, spec)
    batch = load_file(os.path.join(workdir, "batch.safetensors"))
    output = model(**batch)
    output.loss.backward()
    exported = peft.PeftModel.from_pretrained(transformers.AutoModelForCausalLM.from_pretrained(
        os.path.join(workdir, "model"), attn_implementation="eager"), os.path.join(workdir, "peft")).eval()
    with torch.no_grad():
        exported_logits = exported(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    save_file({"logits": output.logits[:, count:].detach().contiguous(), "loss": output.loss.detach().reshape(1),
               "grad.table": table.grad.contiguous(), "exported_logits": exported_logits[:, count:].contiguous()},
              os.path.join(workdir, "reference.safetensors"))
    searches = {"greedy": dict(num_beams=1)}
    if spec["beam"]:
        searches["beam"] = dict(num_beams=3, early_stopping="never", length_penalty=1.0)
    eos = spec["eos_token_id"]
    generations = {}
    with torch.no_grad():
        for search, options in searches.items():
            generations[search] = []
            for prompt in spec["prompts"]:  # one at a time: peft drops position_ids, left padding would shift them
                ids = torch.tensor([prompt])
                out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=False,
                                     max_new_tokens=spec["max_new_tokens"], eos_token_id=eos,
                                     pad_token_id=spec["pad_token_id"], **options)[0, len(prompt):].tolist()
                generations[search].append(out[:out.index(eos)] if eos in out else out)
    with open(os.path.join(workdir, "generations.json"), "w") as handle:
        json.dump(generations, handle)


if __name__ == "__main__":
    torch.set_num_threads(1)
    for directory in sys.argv[1:]:
        run(directory)

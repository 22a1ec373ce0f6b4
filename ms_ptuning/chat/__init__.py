"""Prompt/response (chat) P-tuning of decoder LMs, THUDM's ChatGLM-6B `ptuning/` recipe on any causal LM
ms_ptuning loads (Llama, Qwen2, GPT-2): JSON lines with a prompt, a response and optionally a history of
[query, response] pairs (`data.py`), loss on the response tokens only, ROUGE-1/2/L and BLEU-4 on generations
as ChatGLM's main.py reports them (`metrics.py`), and the command `python -m ms_ptuning.chat` or
`ms-ptuning chat` (`train.py`).
"""

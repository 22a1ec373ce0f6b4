"""The PyTorch reference: the same encoders, modes and heads in real torch on Hugging Face transformers.

It mirrors the package file for file (`hf_backbone.py`, `encoders/`, `modes/`, `models/` with the `HEADS`
registry), so a parity pair reads side by side. It runs in its own process (`python -m
ms_ptuning.reference.run` / `.train`), because importing mindnlp anywhere in a process replaces `torch` with
mindtorch. Nothing under this package may import mindnlp or ms_ptuning modules other than
`ms_ptuning.config` and `ms_ptuning.deberta_prefix` (plain torch API, shared with the mindnlp side so both
run the very same DeBERTa prefix attention).
"""

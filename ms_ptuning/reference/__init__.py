"""The PyTorch reference: the same encoders and heads in real torch on Hugging Face transformers.

Runs in its own process (`python -m ms_ptuning.reference.run`), because importing mindnlp anywhere in a
process replaces `torch` with mindtorch. Nothing under this package may import mindnlp or ms_ptuning
modules other than `ms_ptuning.config` and `ms_ptuning.deberta_prefix` (plain torch API, shared with the
mindnlp side so both run the very same DeBERTa prefix attention).
"""

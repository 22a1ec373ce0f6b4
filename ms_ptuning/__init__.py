"""ms_ptuning: P-tuning v1, P-tuning v2 and fine-tuning on MindSpore + MindNLP.

This file imports nothing heavy on purpose: `ms_ptuning.reference` runs the PyTorch reference in a
process that must never import mindnlp (which replaces `torch` with mindtorch).
"""

__version__ = "0.1.0"

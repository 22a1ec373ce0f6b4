"""P-tuning v1 knowledge probing (LAMA / T-REx): templates, facts and the vocabulary filter, P@k, and the
per-relation training loop (the probe model is the registry's `lama` head, `ms_ptuning.models.lama_probe`).
Importing the package imports nothing heavy; `train` brings in the MindSpore stack."""

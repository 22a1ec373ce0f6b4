"""P-tuning v1 knowledge probing (LAMA / T-REx): templates, facts and the vocabulary filter, the probe
model, P@k, and the per-relation training loop. Importing the package imports nothing heavy; `model` and
`train` bring in the MindSpore stack."""

"""Whole runs against the PyTorch reference: the same task trained by ms_ptuning and by real
`transformers.Trainer` in torch (THUDM's recipe), seed by seed, scores and curves side by side.

- `driver.py`: `python -m ms_ptuning.comparison` / `scripts/compare_torch.sh --task ...`: both sides per seed,
  the table, comparison.json, comparison.png, and the exact same-seed check with dropout 0.
- `ms_side.py`: ms_ptuning's run (`ms_ptuning.run`), handing what the torch side needs to `exchange`.
- `torch_side.py`: the torch run (real transformers.Trainer, reference heads); never imports mindnlp.
- `exchange.py`: the directory between them (encoded splits, initial weights, settings).
- `runs.py`: reading run directories (ours and any transformers.Trainer output_dir).
- `report.py`: statistics, the spread rule, the table and the plot.
- `compare_dirs.py`: `ms-ptuning compare RUN_DIR ...` over existing runs.
"""

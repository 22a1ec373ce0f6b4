"""THUDM fine-tunes (neither --prefix nor --prompt) through Hugging Face's own `AutoModelFor*` task models. The
reference mirror's fine-tuning heads must be those models: same weights → same logits. RoBERTa's sequence
classifier is the case where this differs from the prefix/prompt heads (a `RobertaClassificationHead` on <s>
instead of the pooler), so a mirror that shared our prefix head's choice would fail here."""

import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_finetune_heads_are_hugging_faces_task_models():
    result = subprocess.run([sys.executable, os.path.join(ROOT, "tests", "hf_heads_reference.py")], cwd=ROOT,
                            capture_output=True, text=True, timeout=600, env=dict(os.environ, PYTHONPATH=ROOT))
    assert result.returncode == 0, result.stderr[-2000:]
    differences = json.loads(result.stdout.strip().splitlines()[-1])
    assert len(differences) == 8
    for case, difference in differences.items():
        assert difference <= 1e-6, (case, difference)

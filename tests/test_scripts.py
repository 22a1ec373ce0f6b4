"""scripts/: the run scripts pass the reference's hyperparameters (REFERENCE_NOTES.md) to ms_ptuning.run, check
their arguments, and the hyperparameter search writes one results table."""

import json
import os
import shlex
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPTS = os.path.join(ROOT, "scripts")
# script → task, batch size, lr, pre_seq_len, epochs, dropout, seed, max length (THUDM/P-tuning-v2 run_script/)
REFERENCE = {
    "boolq_bert": ("boolq", 32, 5e-3, 40, 100, 0.1, 11, 128),
    "boolq_roberta": ("boolq", 32, 7e-3, 8, 100, 0.1, 11, 128),
    "rte_bert": ("rte", 32, 1e-2, 20, 60, 0.1, 11, 128), "rte_roberta": ("rte", 32, 5e-3, 128, 100, 0.1, 11, 128),
    "copa_bert": ("copa", 16, 1e-2, 16, 80, 0.1, 44, 128), "copa_roberta": ("copa", 16, 9e-3, 8, 120, 0.1, 11, 128),
    "wic_bert": ("wic", 16, 1e-4, 20, 80, 0.1, 44, 128), "wic_roberta": ("wic", 32, 1e-2, 8, 50, 0.1, 11, 128),
    "wsc_bert": ("wsc", 16, 5e-3, 20, 80, 0.1, 44, 128), "wsc_roberta": ("wsc", 16, 1e-2, 8, 10, 0.1, 44, 128),
    "conll03_roberta": ("conll2003", 16, 3e-2, 11, 30, 0.1, 11, 152),
    "conll04_bert": ("conll2004", 32, 2e-2, 128, 40, 0.2, 11, 128),
    "conll04_roberta": ("conll2004", 32, 6e-2, 144, 80, 0.1, 11, 128),
    "ontonotes_bert": ("ontonotes", 16, 1e-2, 16, 30, 0.1, 11, 128),
    "ontonotes_roberta": ("ontonotes", 16, 7e-3, 48, 60, 0.1, 14, 128),
    "conll05_roberta": ("conll2005", 16, 6e-3, 224, 15, 0.1, 11, 128),
    "conll12_roberta": ("conll2012", 32, 5e-3, 64, 45, 0.1, 11, 128),
    "squad_roberta": ("squad", 8, 5e-3, 16, 30, 0.2, 11, 384),
    "squad_v2_roberta": ("squad_v2", 8, 5e-3, 8, 10, 0.2, 11, 384),
}


def script_command(name, *args, **env):
    """The ms_ptuning.run argv a run script would execute (DRY_RUN), as {flag: last value}."""
    result = subprocess.run(["bash", os.path.join(SCRIPTS, f"run_{name}.sh"), *args], capture_output=True, text=True,
                            env=dict(os.environ, DRY_RUN="1", **env), timeout=30)
    assert result.returncode == 0, result.stderr
    argv = shlex.split(result.stdout)
    assert argv[:3] == [os.path.join(ROOT, ".venv", "bin", "python"), "-m", "ms_ptuning.run"]
    return argv[3:]


def flags(argv):
    return {argv[i].lstrip("-"): argv[i + 1] for i in range(0, len(argv), 2)}  # later flags win, as argparse


@pytest.mark.parametrize("name", sorted(REFERENCE))
def test_run_script_carries_the_reference_hyperparameters(name, tmp_path):
    task, batch, lr, pre_seq_len, epochs, dropout, seed, max_length = REFERENCE[name]
    given = flags(script_command(name, str(tmp_path), str(tmp_path)))
    assert given["task"] == task and given["mode"] == "prefix"
    assert given["model_name_or_path"] == given["data_dir"] == str(tmp_path)
    assert given["output_dir"] == os.path.join(ROOT, "outputs", f"run_{name}")
    assert int(given["per_device_train_batch_size"]) == batch and float(given["learning_rate"]) == lr
    assert int(given["pre_seq_len"]) == pre_seq_len and int(given["num_train_epochs"]) == epochs
    assert float(given["hidden_dropout_prob"]) == dropout and int(given["seed"]) == seed
    assert int(given["max_seq_length"]) == max_length
    assert (given.get("prefix_projection"), given.get("template_id")) == (
        ("True", "1") if name == "wic_bert" else (None, None))


HEAD_ONLY_FINETUNING = {"conll03_roberta", "conll04_bert", "conll04_roberta", "ontonotes_bert", "ontonotes_roberta",
                        "squad_roberta", "squad_v2_roberta", "copa_bert", "copa_roberta"}  # THUDM's fix_bert: NER, QA, COPA


@pytest.mark.parametrize("name", sorted(REFERENCE))
def test_finetune_mode_freezes_the_backbone_where_thudm_does(name, tmp_path):
    finetune = flags(script_command(name, str(tmp_path), str(tmp_path), "--mode", "finetune"))
    assert finetune["mode"] == "finetune"
    assert finetune.get("freeze_backbone") == ("True" if name in HEAD_ONLY_FINETUNING else None)
    assert "freeze_backbone" not in flags(script_command(name, str(tmp_path), str(tmp_path)))  # prefix mode
    if name in HEAD_ONLY_FINETUNING:  # the user's flag comes last and wins
        full = flags(script_command(name, str(tmp_path), str(tmp_path), "--mode", "finetune", "--freeze_backbone",
                                    "False"))
        assert full["freeze_backbone"] == "False"


def test_run_script_arguments(tmp_path):
    given = flags(script_command("rte_roberta", "--seed", "3", MODEL_DIR=str(tmp_path), DATA_DIR=str(tmp_path),
                                 OUTPUT_DIR=str(tmp_path / "out")))
    assert given["seed"] == "3" and given["output_dir"] == str(tmp_path / "out")  # user flags override
    env = {k: v for k, v in os.environ.items() if k not in ("MODEL_DIR", "DATA_DIR")}
    for args, message in [((), "MODEL_DIR is not set"), ((str(tmp_path),), "DATA_DIR is not set"),
                          ((str(tmp_path / "nope"), str(tmp_path)),
                           f"MODEL_DIR '{tmp_path / 'nope'}' is not a directory")]:
        result = subprocess.run(["bash", os.path.join(SCRIPTS, "run_rte_roberta.sh"), *args], env=env,
                                capture_output=True, text=True, timeout=30)
        assert result.returncode == 2 and message in result.stderr
        if not args:  # the usage text names the model the reference ran
            assert "usage: scripts/run_rte_roberta.sh" in result.stderr and "roberta-large" in result.stderr


def write_results(directory, **results):
    os.makedirs(directory)
    with open(os.path.join(directory, "results.json"), "w") as handle:
        json.dump(results, handle)


def test_search_table(tmp_path):
    write_results(tmp_path / "lr5e-3_psl8_ep20", best_eval_accuracy=0.61, best_step=40, eval_accuracy=0.6)
    write_results(tmp_path / "lr1e-2_psl16_ep20", best_eval_accuracy=0.74, best_step=20, eval_accuracy=0.7)
    os.makedirs(tmp_path / "lr7e-3_psl4_ep40")  # a run that failed before writing results.json
    os.makedirs(tmp_path / "unrelated")
    table = subprocess.run([sys.executable, os.path.join(SCRIPTS, "lib", "results_table.py"), str(tmp_path)],
                           capture_output=True, text=True, timeout=30)
    assert table.returncode == 0, table.stderr
    rows = [line.split("\t") for line in open(tmp_path / "results.tsv").read().splitlines()]
    assert rows[0] == ["learning_rate", "pre_seq_len", "epochs", "metric", "value", "best_step", "status"]
    assert rows[1] == ["1e-2", "16", "20", "best_eval_accuracy", "0.74", "20", "ok"]
    assert rows[2] == ["5e-3", "8", "20", "best_eval_accuracy", "0.61", "40", "ok"]
    assert rows[3][:3] == ["7e-3", "4", "40"] and rows[3][6].startswith("failed: [Errno 2]")
    assert len(rows) == 4
    markdown = open(tmp_path / "results.md").read().splitlines()
    assert markdown[2] == "| 1e-2 | 16 | 20 | best_eval_accuracy | 0.74 | 20 | ok |"
    assert markdown == table.stdout.splitlines()
    final = subprocess.run([sys.executable, os.path.join(SCRIPTS, "lib", "results_table.py"), str(tmp_path),
                            "accuracy"], capture_output=True, text=True, timeout=30)
    assert final.returncode == 0 and "| 1e-2 | 16 | 20 | best_eval_accuracy | 0.74 |" in final.stdout


def test_search_script_checks_its_arguments(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("MODEL_DIR", "DATA_DIR")}
    result = subprocess.run(["bash", os.path.join(SCRIPTS, "hparam_search.sh")], env=env, capture_output=True,
                            text=True, timeout=30)
    assert result.returncode == 2 and "usage: scripts/hparam_search.sh TASK" in result.stderr
    result = subprocess.run(["bash", os.path.join(SCRIPTS, "hparam_search.sh"), "copa", str(tmp_path)], env=env,
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 2 and "DATA_DIR '' is not a directory" in result.stderr


def test_distributed_script_builds_the_msrun_command_and_checks_the_worker_count(tmp_path):
    env = dict(os.environ, DRY_RUN="1", MASTER_PORT="9123", WORKER_NUM="4")
    printed = subprocess.run(["bash", os.path.join(SCRIPTS, "run_distributed.sh"), "2", "--task", "rte",
                              "--output_dir", str(tmp_path)], env=env, capture_output=True, text=True, timeout=30)
    assert printed.returncode == 0, printed.stderr
    words = printed.stdout.split()
    assert words[0].endswith("/.venv/bin/msrun")
    options = dict(zip(words[1:words.index("python")], words[2:words.index("python")]))
    assert options["--worker_num"] == "4" and options["--local_worker_num"] == "2"
    assert options["--master_port"] == "9123" and options["--log_dir"] == str(tmp_path / "msrun_logs")
    assert words[words.index("python"):] == ["python", "-m", "ms_ptuning.run", "--task", "rte", "--output_dir",
                                             str(tmp_path)]
    for bad in ([], ["two"], ["0"]):
        refused = subprocess.run(["bash", os.path.join(SCRIPTS, "run_distributed.sh"), *bad], env=env,
                                 capture_output=True, text=True, timeout=30)
        assert refused.returncode == 2 and "usage: scripts/run_distributed.sh NUM_WORKERS" in refused.stderr

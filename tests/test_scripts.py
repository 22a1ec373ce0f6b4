"""scripts/: the run scripts pass the reference's hyperparameters (REFERENCE_NOTES.md) to ms_ptuning.run, check
their arguments, and the hyperparameter search writes one results table."""

import json
import os
import shlex
import shutil
import subprocess
import sys

import pytest

from ms_ptuning.tasks import get_task

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
    # NER/SRL: the reference's --max_seq_length (152, 128) is ignored by its NER/SRL code: not passed
    "conll03_roberta": ("conll2003", 16, 3e-2, 11, 30, 0.1, 11, None),
    "conll04_bert": ("conll2004", 32, 2e-2, 128, 40, 0.2, 11, None),
    "conll04_roberta": ("conll2004", 32, 6e-2, 144, 80, 0.1, 11, None),
    "ontonotes_bert": ("ontonotes", 16, 1e-2, 16, 30, 0.1, 11, None),
    "ontonotes_roberta": ("ontonotes", 16, 7e-3, 48, 60, 0.1, 14, None),
    "conll05_roberta": ("conll2005", 16, 6e-3, 224, 15, 0.1, 11, None),
    "conll12_roberta": ("conll2012", 32, 5e-3, 64, 45, 0.1, 11, None),
    "squad_roberta": ("squad", 8, 5e-3, 16, 30, 0.2, 11, 384),
    "squad_v2_roberta": ("squad_v2", 8, 5e-3, 8, 10, 0.2, 11, 384),
}
# the test splits the reference predicts at every new best dev score (none for SQuAD and SuperGLUE)
TEST_SPLITS = {"conll03_roberta": "test", "conll04_bert": "test", "conll04_roberta": "test",
               "ontonotes_bert": "test", "ontonotes_roberta": "test", "conll05_roberta": "test_wsj,test_brown",
               "conll12_roberta": "test"}
TASK_FIXTURES = os.path.join(ROOT, "tests", "fixtures", "tasks")


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
    assert (int(given["max_seq_length"]) if "max_seq_length" in given else None) == max_length
    assert given.get("eval_splits") == TEST_SPLITS.get(name)
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


@pytest.mark.parametrize("name", sorted(TEST_SPLITS))
def test_run_script_test_splits_are_the_tasks(name):
    """Every split a script requests is one of its task's splits, and the task's fixture has it."""
    task = get_task(REFERENCE[name][0])
    for split in TEST_SPLITS[name].split(","):
        assert split in task.split_files
        assert task.load(os.path.join(TASK_FIXTURES, task.name), split)


def lama_data(tmp_path):
    data_dir = tmp_path / "lama"
    shutil.copytree(os.path.join(ROOT, "tests", "fixtures", "lama"), data_dir)
    return data_dir


def run_lama_script(*args, **env):
    return subprocess.run(["bash", os.path.join(SCRIPTS, "run_lama.sh"), *args], capture_output=True, text=True,
                          env=dict(os.environ, DRY_RUN="1", **env), timeout=60)


def test_lama_script_ranks_over_a_shared_vocabulary(tmp_path):
    data_dir = lama_data(tmp_path)
    refused = run_lama_script(str(tmp_path), str(data_dir))
    assert refused.returncode == 2 and "no shared vocabulary: put the reference's 29k-vocab.json" in refused.stderr
    (data_dir / "29k-vocab.json").write_text("{}")
    printed = run_lama_script(str(tmp_path), str(data_dir), "--vocab_key", "bert-base-cased")
    assert printed.returncode == 0, printed.stderr
    commands = [shlex.split(line) for line in printed.stdout.splitlines()]
    assert [command[command.index("--relation") + 1] for command in commands] == ["P19", "P1412"]
    for command in commands:
        assert command[command.index("--vocab_file") + 1] == str(data_dir / "29k-vocab.json")
        assert command[-2:] == ["--vocab_key", "bert-base-cased"]
    shared = run_lama_script(str(tmp_path), str(data_dir), VOCAB_FILE=str(tmp_path / "other.json"))
    assert shared.returncode == 2 and "VOCAB_FILE" in shared.stderr and "is not a file" in shared.stderr
    (data_dir / "29k-vocab.json").unlink()
    shared = run_lama_script(str(tmp_path), str(data_dir), SHARED_MODEL_DIRS=f"{tmp_path} {data_dir}")
    assert shared.returncode == 0, shared.stderr
    first = shlex.split(shared.stdout.splitlines()[0])
    assert "--vocab_file" not in first and [first[i + 1] for i, word in enumerate(first)
                                            if word == "--shared_model_dir"] == [str(tmp_path), str(data_dir)]


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


# THUDM/ChatGLM-6B ptuning/train.sh: PRE_SEQ_LEN=128, LR=2e-2, batch 1 x 16 accumulation, 3000 steps, 64 + 64 tokens
CHATGLM_PTUNING = {"mode": "prefix", "pre_seq_len": "128", "learning_rate": "2e-2", "per_device_train_batch_size": "1",
                   "gradient_accumulation_steps": "16", "max_steps": "3000", "max_source_length": "64",
                   "max_target_length": "64", "logging_steps": "10", "save_steps": "1000"}


def test_chat_script_carries_chatglms_ptuning_defaults_and_its_flags_parse(tmp_path):
    from ms_ptuning.chat.train import parse

    data = tmp_path / "pairs.jsonl"
    data.write_text('{"prompt": "a", "response": "b"}\n')
    script = os.path.join(SCRIPTS, "run_chat_ptuning.sh")
    result = subprocess.run(["bash", script, str(tmp_path), str(data), str(data), "--pre_seq_len", "8"],
                            capture_output=True, text=True, env=dict(os.environ, DRY_RUN="1"), timeout=30)
    assert result.returncode == 0, result.stderr
    argv = shlex.split(result.stdout)
    assert argv[:3] == [os.path.join(ROOT, ".venv", "bin", "python"), "-m", "ms_ptuning.chat"]
    given = flags(argv[3:])
    assert {name: given[name] for name in CHATGLM_PTUNING} == {**CHATGLM_PTUNING, "pre_seq_len": "8"}  # user's last
    assert given["output_dir"] == os.path.join(ROOT, "outputs", "pairs_chat")
    model, data_args, _, training = parse(argv[3:])  # every flag is one the command knows
    assert (model.mode, model.pre_seq_len, training.gradient_accumulation_steps, training.max_steps) == \
        ("prefix", 8, 16, 3000)
    assert (data_args.train_file, data_args.max_source_length, data_args.max_target_length) == (str(data), 64, 64)
    missing = subprocess.run(["bash", script, str(tmp_path)], capture_output=True, text=True, timeout=30)
    assert missing.returncode == 2
    assert "usage: scripts/run_chat_ptuning.sh MODEL_DIR TRAIN_FILE DEV_FILE" in missing.stderr

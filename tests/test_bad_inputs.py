"""Hostile and broken inputs across the loaders: every case is refused with a message naming file:line:field
(or, for NLPCC2017's documented skip-and-count, counted with its line and reason), before any output exists.

`BAD_INPUTS` is the table of the closing note: what is wrong → the message the user sees. Cases of the
splits `ms_ptuning.run` loads (train, validation) and of its flags go through `run.run` itself, so the
check that nothing was written covers the whole driver; test-split cases go through the task's loader."""

import json
import os
import shutil
from dataclasses import dataclass

import numpy as np
import pytest

from ms_ptuning import run as run_module
from ms_ptuning.backbones import load_backbone, load_tokenizer
from ms_ptuning.backend import torch
from ms_ptuning.config import PTuningConfig
from ms_ptuning.data.nlpcc2017 import DataFormatError, LoadReport, iter_records
from ms_ptuning.models import HEADS
from ms_ptuning.tasks import TaskDataError, get_task
from tiny_runs import same_process_runs  # noqa: F401  (a fixture)
from tiny_runs import save_tiny_bert

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "tasks")
RUN_FLAGS = ["--max_seq_length", "32", "--per_device_train_batch_size", "2", "--max_steps", "1", "--disable_tqdm",
             "True"]


def jsonl(*records) -> bytes:
    return "".join(json.dumps(record) + "\n" for record in records).encode()


def tsv(*rows) -> bytes:
    return "".join("\t".join(row) + "\n" for row in rows).encode()


def squad(context: str, question, answer_start: int) -> bytes:
    qa = {"id": "q1", "question": question, "answers": [{"text": context[:5], "answer_start": answer_start}]}
    return json.dumps({"data": [{"title": "t", "paragraphs": [{"context": context, "qas": [qa]}]}]}).encode()


def fixture_bytes(task: str, name: str) -> bytes:
    with open(os.path.join(FIXTURES, task, name), "rb") as handle:
        return handle.read()


RTE = {"premise": "The roof collapsed.", "hypothesis": "The roof fell.", "label": "entailment", "idx": 0}
BOOLQ = {"question": "can penguins fly", "passage": "Penguins are flightless birds.", "label": False, "idx": 0}
WSC = {"text": "Sara lent Emma her bike because she needed it for the race.", "label": True, "idx": 0,
       "target": {"span1_index": 2, "span1_text": "Emma", "span2_index": 6, "span2_text": "she"}}
COPA = {"premise": "The glass fell.", "choice1": "It broke.", "choice2": "It sang.", "question": "why", "label": 0}
STSB_HEADER = ("index", "genre", "filename", "year", "old_index", "source1", "source2", "sentence1", "sentence2",
               "score")
STSB_ROW = ("0", "main-captions", "MSRvid", "2012test", "0001", "none", "none", "A man rides.", "A man rides a bike.")
CONLL_HEAD = b"-DOCSTART- -X- -X- O\n\n"


@dataclass
class Bad:
    what: str  # the bad input
    task: str
    file: str | None  # replaced in a copy of the task's fixture directory (None: the flags are what is bad)
    content: bytes
    message: str  # regex of what the user sees
    split: str = "train"  # a file of a split run.py never loads ("test") is loaded by the task directly
    flags: tuple = ()
    error: type = TaskDataError


BAD_INPUTS = [
    # GLUE tsv
    Bad("empty file", "sst2", "train.tsv", b"", r"sst2/train\.tsv: file is empty"),
    Bad("header row only", "sst2", "train.tsv", tsv(("sentence", "label")), r"sst2/train\.tsv: no data rows"),
    Bad("non-UTF-8 byte (Latin-1 é)", "sst2", "train.tsv", b"sentence\tlabel\na caf\xe9 film\t1\n",
        r"sst2/train\.tsv:2: not UTF-8 text \(byte 0xe9 at column 6\)"),
    Bad("missing label column", "sst2", "dev.tsv", tsv(("sentence",), ("fine",)),
        r"sst2/dev\.tsv:1: missing column 'label'; the header has 'sentence'"),
    Bad("row with an extra tab", "sst2", "train.tsv", tsv(("sentence", "label"), ("good", "1"), ("bad", "0", "x")),
        r"sst2/train\.tsv:3: expected 2 tab-separated fields \(sentence, label\), got 3"),
    Bad("label never seen in training", "sst2", "dev.tsv", tsv(("sentence", "label"), ("fine", "2")),
        r"sst2/dev\.tsv:2: field 'label': unknown label '2'; expected one of '0', '1'"),
    Bad("zero-length sentence", "sst2", "train.tsv", tsv(("sentence", "label"), ("good film", "1"), (" ", "0")),
        r"sst2/train\.tsv:3: field 'sentence': empty text"),
    Bad("test row with a missing field", "sst2", "test.tsv", tsv(("index", "sentence"), ("0",)),
        r"sst2/test\.tsv:2: expected 2 tab-separated fields \(index, sentence\), got 1", split="test"),
    Bad("regression score not a number", "stsb", "dev.tsv", tsv(STSB_HEADER, STSB_ROW + ("high",)),
        r"stsb/dev\.tsv:2: field 'score': expected a number, got 'high'"),
    Bad("regression score NaN", "stsb", "train.tsv", tsv(STSB_HEADER, STSB_ROW + ("nan",)),
        r"stsb/train\.tsv:2: field 'score': expected a finite number, got 'nan'"),
    # SuperGLUE jsonl
    Bad("broken JSON line", "rte", "train.jsonl", jsonl(RTE) + b'{"premise": "x", \n',
        r"rte/train\.jsonl:2: invalid JSON: Expecting property name enclosed in double quotes"),
    Bad("JSON list instead of object", "rte", "train.jsonl", jsonl(["premise", "hypothesis"]),
        r"rte/train\.jsonl:1: expected a JSON object, got list"),
    Bad("missing field", "rte", "val.jsonl", jsonl({k: v for k, v in RTE.items() if k != "hypothesis"}),
        r"rte/val\.jsonl:1: field 'hypothesis': missing"),
    Bad("number where text belongs", "rte", "train.jsonl", jsonl({**RTE, "premise": 7}),
        r"rte/train\.jsonl:1: field 'premise': expected str, got int 7"),
    Bad("label of another task (CB's)", "rte", "val.jsonl", jsonl({**RTE, "label": "contradiction"}),
        r"rte/val\.jsonl:1: field 'label': unknown label 'contradiction'; expected one of 'entailment', "
        r"'not_entailment'"),
    Bad("null label in train", "rte", "train.jsonl", jsonl({**RTE, "label": None}),
        r"rte/train\.jsonl:1: field 'label': missing"),
    Bad("non-UTF-8 byte in jsonl", "rte", "train.jsonl", b'{"premise": "caf\xe9", "hypothesis": "x"}\n',
        r"rte/train\.jsonl:1: not UTF-8 text \(byte 0xe9 at column 17\)"),
    Bad("label 1 instead of true", "boolq", "train.jsonl", jsonl({**BOOLQ, "label": 1}),
        r"boolq/train\.jsonl:1: field 'label': unknown label 1; expected one of False, True"),
    Bad("zero-length question and passage", "boolq", "train.jsonl", jsonl({**BOOLQ, "question": "", "passage": " "}),
        r"boolq/train\.jsonl:1: fields 'question', 'passage': every text is empty"),
    Bad("span index as a string", "wsc", "train.jsonl",
        jsonl({**WSC, "target": {**WSC["target"], "span2_index": "6"}}),
        r"wsc/train\.jsonl:1: field 'span2_index': expected int, got str '6'"),
    Bad("span index past the text", "wsc", "val.jsonl",
        jsonl({**WSC, "target": {**WSC["target"], "span2_index": 40}}),
        r"wsc/val\.jsonl:1: field 'span2_index': word index 40 outside the text's 12 words"),
    Bad("COPA question neither cause nor effect", "copa", "train.jsonl", jsonl(COPA),
        r"copa/train\.jsonl:1: field 'question': expected 'cause' or 'effect', got 'why'"),
    # CoNLL NER and SRL
    Bad("token line with 2 of 4 columns", "conll2003", "train.txt", CONLL_HEAD + b"Anna NNP B-NP B-PER\nBerg I-PER\n",
        r"conll2003/train\.txt:4: expected 4 columns \(token POS chunk NER\), got 2: 'Berg I-PER'"),
    Bad("entity tag outside the label set", "conll2003", "valid.txt", CONLL_HEAD + b"Paris NNP B-NP B-CITY\n",
        r"conll2003/valid\.txt:3: field 'ner_tag': unknown label 'B-CITY'"),
    Bad("document marker only", "conll2003", "train.txt", CONLL_HEAD, r"conll2003/train\.txt: no sentences"),
    Bad("SRL: 3 words, 2 tags", "conll2005", "conll05.train.txt", b"1 She said yes ||| B-A0 B-V\n",
        r"conll05\.train\.txt:1: field 'tags': 3 words but 2 tags"),
    Bad("SRL: predicate index past the sentence", "conll2005", "conll05.train.txt", b"9 She said yes ||| O B-V O\n",
        r"conll05\.train\.txt:1: field 'index': predicate index 9 outside the 3 words"),
    Bad("SRL: no ||| separator", "conll2005", "conll05.train.txt", b"1 She said yes O B-V O\n",
        r"conll05\.train\.txt:1: expected one '\|\|\|' between the words and the tags"),
    # SQuAD json
    Bad("JSON document cut off", "squad", "dev-v1.1.json", fixture_bytes("squad", "dev-v1.1.json")[:200],
        r"squad/dev-v1\.1\.json: invalid JSON: .* \(line \d+, column \d+\)"),
    Bad("list instead of the document object", "squad", "train-v1.1.json", b"[]",
        r"squad/train-v1\.1\.json: expected a JSON object with 'data', got list"),
    Bad("answer_start past the context", "squad", "train-v1.1.json", squad("a stone hut by the lake", "what?", 40),
        r"train-v1\.1\.json data\[0\]\.paragraphs\[0\]\.qas\[0\]\.answers\[0\]: field 'answer_start': answer "
        r"'a sto' at 40"),
    Bad("null question", "squad", "train-v1.1.json", squad("a stone hut by the lake", None, 0),
        r"train-v1\.1\.json data\[0\]\.paragraphs\[0\]\.qas\[0\]: field 'question': missing"),
    # the driver's flags
    Bad("--max_seq_length above the model's 64 positions", "sst2", None, b"",
        r"--max_seq_length: inputs of 128 tokens \+ 4 virtual tokens need more positions than the 64 the model in "
        r".* has \(its config\.json\); pass --max_seq_length 60 or less", flags=("--max_seq_length", "128"),
        error=ValueError),
    Bad("--max_seq_length 62: fits alone, not with 4 prefix positions", "sst2", None, b"",
        r"inputs of 62 tokens \+ 4 virtual tokens need more positions than the 64", flags=("--max_seq_length", "62"),
        error=ValueError),
    Bad("no --data_dir", "sst2", None, b"", r"no data directory given: pass --data_dir", flags=("--data_dir", "")),
    Bad("--data_dir that does not exist", "sst2", None, b"", r"nowhere: data directory not found",
        flags=("--data_dir", "nowhere")),
    Bad("misspelt --task", "sst-2", None, b"", r"unknown task 'sst-2' \(did you mean sst2"),
]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return save_tiny_bert(str(tmp_path_factory.mktemp("tiny_bert")), max_position_embeddings=64)


def data_dir_with(bad: Bad, root) -> str:
    directory = os.path.join(root, bad.task)
    if os.path.isdir(os.path.join(FIXTURES, bad.task)):
        shutil.copytree(os.path.join(FIXTURES, bad.task), directory)
    if bad.file:
        with open(os.path.join(directory, bad.file), "wb") as handle:
            handle.write(bad.content)
    return directory


@pytest.mark.parametrize("bad", BAD_INPUTS, ids=[bad.what for bad in BAD_INPUTS])
def test_bad_input_is_refused_naming_its_place(bad, model_dir, same_process_runs, tmp_path):
    data_dir = data_dir_with(bad, tmp_path)
    if bad.split == "test":
        with pytest.raises(bad.error, match=bad.message):
            get_task(bad.task).load(data_dir, bad.split)
        return
    output_dir = tmp_path / "output"
    argv = ["--task", bad.task, "--model_name_or_path", model_dir, "--data_dir", data_dir, "--output_dir",
            str(output_dir), *RUN_FLAGS, *bad.flags]
    with pytest.raises(bad.error, match=bad.message):
        run_module.run(*run_module.parse(argv))
    assert not output_dir.exists(), "a refused run must not leave output behind"


@pytest.mark.parametrize("mode", ["prefix", "prompt"])
def test_the_position_limit_is_exact(model_dir, mode):
    """60 tokens + 4 virtual ones fill the 64 positions and run; 61 would fail inside the backbone, which is
    why run.py refuses them first with a message that names the flag."""
    config = PTuningConfig(mode=mode, pre_seq_len=4, prefix_dropout=0.0, classifier_dropout=0.0)
    backbone = load_backbone(model_dir)
    model = HEADS["sequence_classification"](backbone, config)
    model.set_train(False)
    batch = {"input_ids": torch.tensor(np.full((1, 60), 7)), "attention_mask": torch.tensor(np.ones((1, 60), np.int64))}
    run_module.check_sequence_length(60, backbone.config, config, model_dir)
    assert model(**batch)[1].shape == (1, 2)
    batch = {"input_ids": torch.tensor(np.full((1, 61), 7)), "attention_mask": torch.tensor(np.ones((1, 61), np.int64))}
    with pytest.raises(ValueError, match="pass --max_seq_length 60 or less"):
        run_module.check_sequence_length(61, backbone.config, config, model_dir)
    with pytest.raises((ValueError, RuntimeError)):
        model(**batch)


def test_text_longer_than_max_seq_length_is_truncated_keeping_the_separator(model_dir):
    """Not an error: as in the reference, long texts are cut to --max_seq_length, ending in [SEP]."""
    tokenizer = load_tokenizer(model_dir)
    long = {"text_a": " ".join(["the river"] * 200), "text_b": None, "label": 1}
    columns = get_task("sst2").encode([long], tokenizer, 16).columns
    assert columns["input_ids"].shape == (1, 16) and columns["attention_mask"].all()
    assert columns["input_ids"][0, -1] == tokenizer.sep_token_id


# ---- NLPCC2017: malformed lines are skipped and counted (or, with strict, stop the read) ----------------

NLPCC_LINE = json.dumps({"article": "北京今天有雨。", "summarization": "北京有雨。"}, ensure_ascii=False).encode()
BAD_NLPCC = [
    ("non-UTF-8 byte (GBK text)", NLPCC_LINE + b"\n" + "{\"article\": \"北京\"}".encode("gbk") + b"\n",
     r":2: not UTF-8 text \(byte 0xb1 at column 14\)"),
    ("zero-length summary", NLPCC_LINE + b"\n" + jsonl({"article": "北京", "summarization": "<Paragraph> "}),
     r":2: field 'summarization' is empty"),
    ("article of the wrong type", NLPCC_LINE + b"\n" + jsonl({"article": ["北京"], "summarization": "雨"}),
     r":2: field 'article' is not a string"),
    ("broken JSON line", NLPCC_LINE + b"\n" + b'{"article": \n', r":2: invalid JSON \(Expecting value at column 13\)"),
]


@pytest.mark.parametrize("what, content, reason", BAD_NLPCC, ids=[case[0] for case in BAD_NLPCC])
def test_nlpcc_bad_line_is_counted_or_stops_a_strict_read(tmp_path, what, content, reason):
    path = tmp_path / "train_with_summ.txt"
    path.write_bytes(content)
    report = LoadReport(str(path))
    assert [record.line for record in iter_records(str(path), report)] == [1]
    assert (report.kept, report.skipped) == (1, 1)
    assert str(report).startswith(f"{path}: kept 1 records, skipped 1 malformed lines (first: line 2: ")
    with pytest.raises(DataFormatError, match=rf"^{path}{reason}"):
        list(iter_records(str(path), strict=True))


@pytest.mark.parametrize("content, message", [
    (b"", r"kept 0 records, skipped 0 malformed lines: no usable record"),
    (b'{"article": ""}\n[1]\n', r"kept 0 records, skipped 2 malformed lines \(first: line 1: field 'article' is "
                                r"empty; line 2: expected a JSON object, got list\): no usable record")],
    ids=["empty file", "no valid line"])
def test_nlpcc_file_without_a_usable_record_is_refused(tmp_path, content, message):
    path = tmp_path / "train_with_summ.txt"
    path.write_bytes(content)
    with pytest.raises(DataFormatError, match=rf"^{path}: {message}"):
        list(iter_records(str(path)))

"""Own-data tasks read from files (no model): every format, the label set from the training file, and
every bad input refused with its file:line:field."""

import json
import os

import numpy as np
import pytest

from ms_ptuning.tasks import TASKS, TaskDataError
from ms_ptuning.tasks.custom import task_for
from ms_ptuning.tasks.records import file_format, iter_records
from tiny_tokenizer import build_tokenizer

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "own_data")


def write(directory, name: str, content) -> str:
    path = os.path.join(str(directory), name)
    with open(path, "wb") as handle:
        handle.write(content.encode() if isinstance(content, str) else content)
    return path


def jsonl(*records) -> str:
    return "".join(json.dumps(record) + "\n" for record in records)


def text_task(train, validation=None, **flags):
    return task_for("text_classification", train_file=train, validation_file=validation or train, **flags)


def test_csv_with_quotes_keeps_line_numbers_and_sorts_the_labels():
    task = text_task(os.path.join(FIXTURES, "reviews_train.csv"))
    examples = task.load(None, "train")
    assert task.labels == ("neg", "pos") and task.problem_type == "single_label_classification"
    assert examples[0] == {"text_a": "A gripping, funny film with a terrific cast.", "text_b": None, "label": 1}
    assert [example["label"] for example in examples[:4]] == [1, 0, 1, 0]
    assert task.splits == ("train", "validation") and task.metric_for_best_model == "accuracy"


def test_csv_record_spanning_lines_and_errors_after_it_name_the_right_line(tmp_path):
    path = write(tmp_path, "t.csv", 'text,label\n"two\nlines",a\nok,b\nbroken,b,extra\n')
    records = list(iter_records(path, "csv"))
    assert [str(where) for where, _ in records] == [f"{path}:2", f"{path}:4", f"{path}:5"]
    assert records[0][1] == {"text": "two\nlines", "label": "a"}
    assert str(records[2][1]) == f"{path}:5: expected 2 comma-separated fields (text, label), got 3"
    with pytest.raises(TaskDataError, match=f"{path}:5: expected 2 comma-separated fields"):
        text_task(path).load(None, "train")


def test_pairs_from_jsonl_with_other_column_names(tmp_path):
    task = task_for("text_classification", train_file=os.path.join(FIXTURES, "nli_train.jsonl"),
                    validation_file=os.path.join(FIXTURES, "nli_dev.jsonl"), text_column_names="premise,claim",
                    label_column_name="verdict")
    train, validation = task.load(None, "train"), task.load(None, "validation")
    assert task.labels == ("contradiction", "entailment", "neutral")
    assert train[0]["text_b"] == "A man is performing music." and train[0]["label"] == 1
    assert [example["label"] for example in validation] == [1, 0, 2]
    assert task.settings() == {"text_column_names": ["premise", "claim"], "label_column_name": "verdict"}
    encoded = task.encode(validation, build_tokenizer(str(tmp_path)), 24)
    assert encoded.columns["input_ids"].shape == (3, 24) and encoded.columns["token_type_ids"].max() == 1


@pytest.mark.parametrize("labels, problem_type, expected", [
    (["b", "a", "c", "a"], "single_label_classification", ("a", "b", "c")),
    ([10, 2, 2, 10], "single_label_classification", (2, 10)),  # numbers sort as numbers
    ([True, False], "single_label_classification", (False, True)),
    ([0.5, 1, 2.25], "regression", ()),
    ([["x", "y"], [], ["z"]], "multi_label_classification", ("x", "y", "z")),
])
def test_label_kinds_from_json(tmp_path, labels, problem_type, expected):
    path = write(tmp_path, "t.jsonl", jsonl(*({"text": f"text {i}", "label": label} for i, label in enumerate(labels))))
    task = text_task(path)
    examples = task.load(None, "train")
    assert task.problem_type == problem_type and task.labels == expected
    if problem_type == "multi_label_classification":
        assert [example["label"] for example in examples] == [[1, 1, 0], [0, 0, 0], [0, 0, 1]]
        assert task.num_labels == 3 and task.metric_for_best_model == "f1_micro"
    if problem_type == "regression":
        assert [example["label"] for example in examples] == [0.5, 1.0, 2.25]
        assert task.num_labels == 1 and task.metric_for_best_model == "mse" and not task.greater_is_better


def test_textual_labels_are_typed_as_pandas_types_the_column(tmp_path):
    ints = write(tmp_path, "i.tsv", "text\tlabel\na\t2\nb\t10\nc\t2\n")
    floats = write(tmp_path, "f.csv", "text,label\na,1\nb,2.5\n")
    words = write(tmp_path, "w.csv", "text,label\na,1\nb,x\n")
    json_validation = write(tmp_path, "v.jsonl", jsonl({"text": "d", "label": 10}))
    task = text_task(ints, json_validation)
    assert task.labels == (2, 10) and [e["label"] for e in task.load(None, "train")] == [0, 1, 0]
    assert task.load(None, "validation")[0]["label"] == 1  # JSON 10 is the csv's "10"
    assert text_task(floats).problem_type == "regression"
    assert text_task(words).labels == ("1", "x")


def test_json_array_records_carry_their_lines(tmp_path):
    path = write(tmp_path, "t.json", '[\n  {"text": "a", "label": "x"},\n\n  {"text": "b",\n   "label": "y"},\n  3\n]\n')
    records = list(iter_records(path, file_format(path)))
    assert [str(where) for where, _ in records] == [f"{path}:2 [0]", f"{path}:4 [1]", f"{path}:6 [2]"]
    assert str(records[2][1]) == f"{path}:6 [2]: expected a JSON object, got int"


def test_json_file_may_hold_json_lines(tmp_path):
    path = write(tmp_path, "t.json", jsonl({"text": "a", "label": "x"}, {"text": "b", "label": "y"}))
    assert text_task(path).labels == ("x", "y")


def test_save_to_disk_dataset_and_dataset_dict_with_class_labels(tmp_path):
    import datasets

    features = datasets.Features({"text": datasets.Value("string"),
                                  "label": datasets.ClassLabel(names=["zebra", "ant"])})
    train = datasets.Dataset.from_dict({"text": ["a", "b", "c"], "label": [0, 1, 0]}, features=features)
    train.save_to_disk(str(tmp_path / "train_set"))
    datasets.DatasetDict({"train": train, "validation": train.select([1])}).save_to_disk(str(tmp_path / "dict"))
    task = text_task(str(tmp_path / "train_set"), str(tmp_path / "dict"))
    assert task.labels == ("ant", "zebra")  # the names, sorted: not the ClassLabel ids
    assert [e["label"] for e in task.load(None, "train")] == [1, 0, 1]
    assert [e["label"] for e in task.load(None, "validation")] == [0]  # the DatasetDict's validation split
    with pytest.raises(TaskDataError, match=r"dict: the saved DatasetDict has no split 'test'; it has train, validation"):
        task_for("text_classification", train_file=str(tmp_path / "dict"), validation_file=str(tmp_path / "dict"),
                 test_file=str(tmp_path / "dict")).load(None, "test")


def test_unlabelled_test_split_and_eval_split_names(tmp_path):
    test = write(tmp_path, "test.csv", "text\nnew one\nnew two\n")
    task = task_for("text_classification", train_file=os.path.join(FIXTURES, "reviews_train.csv"),
                    validation_file=os.path.join(FIXTURES, "reviews_dev.csv"), test_file=test)
    assert task.splits == ("train", "validation", "test")
    assert [e["label"] for e in task.load(None, "test")] == [None, None]
    assert "labels" not in task.encode(task.load(None, "test"), build_tokenizer(str(tmp_path)), 16).columns


def test_conll_and_jsonl_token_classification(tmp_path):
    task = task_for("token_classification", train_file=os.path.join(FIXTURES, "ner_train.jsonl"),
                    validation_file=os.path.join(FIXTURES, "ner_dev.conll"), text_column_names="words",
                    label_column_name="ner")
    train, validation = task.load(None, "train"), task.load(None, "validation")
    assert task.labels == ("B-LOC", "B-MISC", "B-ORG", "B-PER", "I-ORG", "I-PER", "O")
    assert train[1] == {"words": ["Peter", "Blackburn"], "tags": [3, 5]}
    assert validation[1]["words"] == ["Spanish", "Farm", "Minister", "Loyola", "de", "Palacio"]
    assert [task.labels[i] for i in validation[1]["tags"]] == ["B-MISC", "O", "O", "B-PER", "I-PER", "I-PER"]
    assert task.head == "token_classification" and task.metric_for_best_model == "f1"
    dataset = task.encode(validation, build_tokenizer(str(tmp_path)), 32)
    predictions = np.zeros(dataset.columns["input_ids"].shape + (len(task.labels),))
    predictions[..., task.labels.index("O")] = 1  # everything O: no entity found, every O token right
    scores = task.compute_metrics(predictions, dataset)
    assert scores["f1"] == 0.0 and scores["accuracy"] == 5 / 11  # 5 of the 11 words are O


def test_own_data_tasks_are_registered_and_refuse_foreign_flags():
    assert {"text_classification", "token_classification"} <= set(TASKS)
    with pytest.raises(TaskDataError, match=r"--test_file, --train_file: only for text_classification and "
                                             r"token_classification; task 'rte' reads its files from --data_dir"):
        task_for("rte", train_file="a.csv", test_file="b.csv")
    with pytest.raises(TaskDataError, match="--data_dir is not read by task 'text_classification'"):
        task_for("text_classification", data_dir="d", train_file="a.csv", validation_file="b.csv")
    with pytest.raises(TaskDataError, match="task 'token_classification' needs --validation_file FILE"):
        task_for("token_classification", train_file="a.jsonl")
    with pytest.raises(TaskDataError, match="takes 1 or 2 text column"):
        text_task("a.csv", text_column_names="a,b,c")
    with pytest.raises(TaskDataError, match=r"task 'text_classification': no test data; pass --test_file FILE"):
        text_task(os.path.join(FIXTURES, "reviews_train.csv")).load(None, "test")


BAD = [  # (file name, content, validation content or None, expected message after the path)
    ("t.xlsx", "x", None, r": unknown data format '\.xlsx'; expected \.csv, \.json, \.jsonl, \.tsv, or a save_to_disk"),
    ("t.csv", "", None, r": file is empty"),
    ("t.csv", "text,label\n", None, r": no data rows"),
    ("t.csv", "sentence,label\na,b\n", None, r":1: missing column 'text'; the header has 'sentence', 'label'"),
    ("t.csv", "text,label\na,x\n   ,y\n", None, r":3: field 'text': empty text"),
    ("t.csv", "text,label\na,x\nb,\n", None, r":3: field 'label': missing"),
    ("t.csv", b"text,label\na,x\ncaf\xe9,y\n", None, r":3: field 'text': not UTF-8 text \(byte 0xe9\)"),
    ("t.tsv", "text\tlabel\na\tx\nb\ty\tz\n", None, r":3: expected 2 tab-separated fields \(text, label\), got 3"),
    ("t.jsonl", '{"text": "a", "label": "x"}\n{"text": "b", "label": "y"\n', None,
     r":2: invalid JSON: Expecting ',' delimiter \(column 27\)"),
    ("t.jsonl", jsonl({"text": "a", "label": "x"}, {"text": 5, "label": "y"}), None,
     r":2: field 'text': expected str, got int 5"),
    ("t.jsonl", jsonl({"text": "a", "label": "x"}, {"label": "y"}), None, r":2: field 'text': missing"),
    ("t.jsonl", jsonl({"text": "a", "label": "x"}, {"text": "b", "label": 1}), None,
     r":2: field 'label': label 1 is a int, but the file's first label is a str"),
    ("t.jsonl", jsonl({"text": "a", "label": "x"}, {"text": "b", "label": "x"}), None,
     r":1: field 'label': every row has the label 'x': a classifier needs at least two labels"),
    ("t.jsonl", jsonl({"text": "a", "label": ["x"]}, {"text": "b", "label": [["y"]]}), None,
     r":2: field 'label': label \['y'\] \(list\) cannot be a class label here"),
    ("t.csv", "text,label\na,x\nb,y\n", "text,label\nc,x\nd,z\n", r":3: field 'label': label 'z' does not occur in .*"
     r"t\.csv, whose labels are 'x', 'y'"),
    ("t.jsonl", jsonl({"text": "a", "label": 0.5}, {"text": "b", "label": 2}), jsonl({"text": "c", "label": "high"}),
     r":1: field 'label': expected a finite number \(regression\), got 'high'"),
]


@pytest.mark.parametrize("name, content, validation, message", BAD)
def test_bad_own_data_names_file_line_and_field(tmp_path, name, content, validation, message):
    path = write(tmp_path, name, content)
    validation_path = write(tmp_path, "v" + os.path.splitext(name)[1], validation) if validation else path
    task = text_task(path, validation_path)
    with pytest.raises(TaskDataError, match=f"^{validation_path if validation else path}{message}"):
        task.load(None, "validation" if validation else "train")


@pytest.mark.parametrize("train, message", [
    (jsonl({"tokens": ["a", "b"], "tags": ["O"]}), r":1: field 'tags': expected a list of 2 tags, one per token, got 1 tags"),
    (jsonl({"tokens": ["a"], "tags": ["PER"]}), r":1 tags\[0\]: tag 'PER' is not O, B-<type> or I-<type>"),
    (jsonl({"tokens": ["a", ""], "tags": ["O", "O"]}), r":1 tokens\[1\]: expected a non-empty string, got ''"),
    (jsonl({"tokens": [], "tags": []}), r":1: field 'tokens': no tokens"),
])
def test_bad_token_classification_data(tmp_path, train, message):
    path = write(tmp_path, "t.jsonl", train)
    task = task_for("token_classification", train_file=path, validation_file=path)
    with pytest.raises(TaskDataError, match=f"^{path}{message}"):
        task.load(None, "train")


def test_unseen_tag_and_half_tagged_conll_sentence(tmp_path):
    train = write(tmp_path, "t.jsonl", jsonl({"tokens": ["Ann", "ran"], "tags": ["B-PER", "O"]}))
    validation = write(tmp_path, "v.conll", "Paris B-LOC\nis O\n\nAnn B-PER\nran\n")
    task = task_for("token_classification", train_file=train, validation_file=validation)
    with pytest.raises(TaskDataError, match=f"^{validation}:1: field 'tags': label 'B-LOC' does not occur in {train}"):
        task.load(None, "validation")
    records = list(iter_records(validation, "conll"))
    assert str(records[1][1]) == f"{validation}:4: token 'ran' has no tag column while others have one"

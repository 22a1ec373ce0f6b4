"""Task data: every task's fixture (real file format) loads and encodes into its head's columns; inputs,
templates and label alignment are as the reference builds them; bad data fails naming file/line/field."""

import json
import os
import shutil

import numpy as np
import pytest

from ms_ptuning.tasks import TASKS, TaskDataError, get_task
from tiny_tokenizer import build_byte_level_tokenizer, build_tokenizer

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures", "tasks")
GLUE = ["cola", "sst2", "mrpc", "qqp", "stsb", "mnli", "qnli", "glue_rte", "wnli"]
SUPERGLUE = ["boolq", "cb", "rte", "wic", "wsc", "multirc", "copa", "record"]
TAGGING = ["conll2003", "conll2004", "ontonotes", "conll2005", "conll2012"]
QA = ["squad", "squad_v2"]
MODEL_COLUMNS = {"input_ids", "attention_mask", "token_type_ids"}
LABEL_COLUMNS = {"sequence_classification": {"labels"}, "token_classification": {"labels"},
                 "multiple_choice": {"labels"}, "question_answering": {"start_positions", "end_positions"}}
MAX_LENGTH = 64
QA_OPTIONS = {"doc_stride": 16}  # small windows, so the fixture contexts overflow into several


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    return build_tokenizer(str(tmp_path_factory.mktemp("tokenizer")))


def fixture(name):
    return os.path.join(FIXTURES, name)


def load_encode(name, split, tokenizer, data_dir=None, **options):
    task = get_task(name)
    examples = task.load(data_dir or fixture(name), split)
    return task, examples, task.encode(examples, tokenizer, MAX_LENGTH, **(QA_OPTIONS if name in QA else options))


def copy_fixture(name, tmp_path):
    return shutil.copytree(fixture(name), tmp_path / name)


def test_every_task_is_registered():
    assert set(GLUE + SUPERGLUE + TAGGING + QA) <= set(TASKS)


@pytest.mark.parametrize("name", GLUE + SUPERGLUE + TAGGING + QA)
@pytest.mark.parametrize("split", ["train", "validation"])
def test_fixture_encodes_to_head_columns(name, split, tokenizer):
    task, examples, dataset = load_encode(name, split, tokenizer)
    columns = dataset.columns
    assert set(columns) == MODEL_COLUMNS | LABEL_COLUMNS[task.head] | set(task.metadata_columns)
    if name == "record":  # one (passage, query with entity) pair per candidate
        rows = sum(len(example["entities"]) for example in examples)
    elif task.head == "question_answering":  # one or more windows per question
        rows = len(dataset)
        assert set(columns["example_index"]) == set(range(len(examples)))
    else:
        rows = len(examples)
    assert len(dataset) == rows > 0
    width = MAX_LENGTH
    if task.head == "token_classification":  # padded to the longest example, cut to 32·k per batch
        width = int(columns["attention_mask"].sum(axis=-1).max())
        assert width < MAX_LENGTH and dataset.sequence_width == width
    shape = (rows, len(task.labels), width) if task.head == "multiple_choice" else (rows, width)
    for column in MODEL_COLUMNS:
        assert columns[column].shape == shape and columns[column].dtype == np.int64
    assert np.all(columns["attention_mask"].sum(axis=-1) > 2)
    if task.head == "token_classification":
        labelled = columns["labels"][columns["labels"] != -100]
        assert len(labelled) == sum(len(example["words"]) for example in examples)
        assert labelled.min() >= 0 and labelled.max() < task.num_labels
    elif task.head == "question_answering":
        assert np.all((columns["start_positions"] >= 0) & (columns["start_positions"] <= columns["end_positions"]))
    elif task.problem_type == "regression":
        assert columns["labels"].dtype == np.float32
    else:
        assert set(np.unique(columns["labels"])) <= set(range(task.num_labels))


@pytest.mark.parametrize("name, split", [(name, "test") for name in GLUE + SUPERGLUE + TAGGING if name != "conll2005"]
                         + [("conll2005", "test_wsj"), ("conll2005", "test_brown")])
def test_test_split_encodes(name, split, tokenizer):
    task, examples, dataset = load_encode(name, split, tokenizer)
    assert len(examples) > 0
    if name in GLUE or name in SUPERGLUE:  # their test files have no labels
        assert "labels" not in dataset.columns and all(example["label"] is None for example in examples)
        with pytest.raises(TaskDataError, match="no labels"):
            task.compute_metrics(np.zeros((len(dataset), max(task.num_labels, 1))), dataset)


def test_glue_tsv_layouts():
    cola = get_task("cola")
    assert [e["label"] for e in cola.load(fixture("cola"), "train")] == [1, 0, 1, 0, 1]  # headerless file
    assert cola.load(fixture("cola"), "test")[1] == {"text_a": "Town the past flows.", "text_b": None, "label": None}
    mrpc = get_task("mrpc").load(fixture("mrpc"), "train")  # starts with a UTF-8 BOM
    assert mrpc[0]["label"] == 1 and mrpc[0]["text_a"].startswith("The company said profits")
    mnli = get_task("mnli")
    assert [e["label"] for e in mnli.load(fixture("mnli"), "validation")] == [0, 1, 2]  # gold_label, not label1
    assert mnli.load(fixture("mnli"), "validation_mismatched")[0]["text_b"] == "The library received a gift."
    assert [e["label"] for e in get_task("stsb").load(fixture("stsb"), "train")] == [4.8, 4.2, 0.4, 2.75, 4.5]
    assert [e["label"] for e in get_task("qnli").load(fixture("qnli"), "train")] == [0, 1, 0, 1]


def test_saved_datasets_give_the_tsv_examples(tmp_path):
    import datasets  # slow to import; only this test needs it

    def save(directory, splits, features):
        datasets.DatasetDict({split: datasets.Dataset.from_dict(rows, features=features)
                              for split, rows in splits.items()}).save_to_disk(str(directory))

    sst2 = get_task("sst2")
    tsv = {split: sst2.load(fixture("sst2"), split) for split in ("train", "validation", "test")}
    features = datasets.Features({"sentence": datasets.Value("string"), "label": datasets.ClassLabel(
        names=list(sst2.labels)), "idx": datasets.Value("int32")})
    save(tmp_path / "sst2", {split: {"sentence": [e["text_a"] for e in examples],
                                     "label": [-1 if e["label"] is None else e["label"] for e in examples],
                                     "idx": list(range(len(examples)))} for split, examples in tsv.items()},
         features)
    for split, examples in tsv.items():
        assert sst2.load(str(tmp_path / "sst2"), split) == examples

    boolq = get_task("boolq")
    jsonl = boolq.load(fixture("boolq"), "train")
    save(tmp_path / "boolq", {"train": {"question": [e["question"] for e in jsonl],
                                        "passage": [e["passage"] for e in jsonl],
                                        "label": [e["label"] for e in jsonl]}},
         datasets.Features({"question": datasets.Value("string"), "passage": datasets.Value("string"),
                            "label": datasets.ClassLabel(names=["False", "True"])}))
    assert boolq.load(str(tmp_path / "boolq"), "train") == jsonl

    squad = get_task("squad")
    json_examples = squad.load(fixture("squad"), "validation")
    save(tmp_path / "squad", {"validation": {
        "id": [e["id"] for e in json_examples], "title": ["t"] * len(json_examples),
        "context": [e["context"] for e in json_examples], "question": [e["question"] for e in json_examples],
        "answers": [{"text": [t for t, _ in e["answers"]], "answer_start": [s for _, s in e["answers"]]}
                    for e in json_examples]}}, None)
    assert squad.load(str(tmp_path / "squad"), "validation") == json_examples

    # label sets that differ between splits: validation's ClassLabel has other names
    other = datasets.Features({**features, "label": datasets.ClassLabel(names=["bad", "good"])})
    rows = {"sentence": ["fine"], "label": [1], "idx": [0]}
    datasets.DatasetDict({"train": datasets.Dataset.from_dict(rows, features=features),
                          "validation": datasets.Dataset.from_dict(rows, features=other)}
                         ).save_to_disk(str(tmp_path / "mixed"))
    assert len(sst2.load(str(tmp_path / "mixed"), "train")) == 1
    with pytest.raises(TaskDataError, match=r"mixed/validation: field 'label': label names \('bad', 'good'\) "
                                            r"differ from the task's \('negative', 'positive'\)"):
        sst2.load(str(tmp_path / "mixed"), "validation")
    with pytest.raises(TaskDataError, match=r"mixed: missing split 'test' in the saved dataset"):
        sst2.load(str(tmp_path / "mixed"), "test")
    save(tmp_path / "no_passage", {"train": {"question": ["q"], "label": [1]}},
         datasets.Features({"question": datasets.Value("string"),
                            "label": datasets.ClassLabel(names=["False", "True"])}))
    with pytest.raises(TaskDataError, match=r"no_passage/train: missing column 'passage'"):
        boolq.load(str(tmp_path / "no_passage"), "train")


def test_superglue_templates(tokenizer):
    wic = get_task("wic")
    example = wic.load(fixture("wic"), "train")[0]
    assert wic.texts(example, 0) == ("She sat on the bank of the river. He put his money in the bank. Does bank have "
                                     "the same meaning in both sentences?", None)
    assert wic.texts(example, 1) == ("bank: She sat on the bank of the river.", "bank: He put his money in the bank.")
    wsc = get_task("wsc")
    example = wsc.load(fixture("wsc"), "train")[0]
    assert wsc.texts(example, 0) == ("she: Sara lent Emma her bike because she needed it for the race.", "Emma")
    assert wsc.texts(example, 1) == ("Sara lent Emma her bike because *she* needed it for the race.", "Emma")
    single, pair = (wic.encode(wic.load(fixture("wic"), "train"), tokenizer, MAX_LENGTH, template_id=t)
                    for t in (0, 1))
    assert single.columns["token_type_ids"].max() == 0 and pair.columns["token_type_ids"].max() == 1
    with pytest.raises(ValueError, match="template_id must be one of"):
        wic.encode(wic.load(fixture("wic"), "train"), tokenizer, MAX_LENGTH, template_id=2)


def test_copa_is_multiple_choice(tokenizer):
    task, examples, dataset = load_encode("copa", "train", tokenizer)
    assert task.head == "multiple_choice" and dataset.columns["input_ids"].shape == (4, 2, MAX_LENGTH)
    assert list(dataset.columns["labels"]) == [0, 1, 0, 1]
    text = tokenizer.decode(dataset.columns["input_ids"][3, 1], skip_special_tokens=True)
    assert text == "the glass fell off the table. so it broke into pieces."  # effect → "so", second choice


def test_multirc_and_record_flatten_their_questions(tokenizer):
    multirc = get_task("multirc").load(fixture("multirc"), "train")
    assert [(e["answer"], e["label"]) for e in multirc] == [("Next to the harbour", 1), ("In the city centre", 0),
                                                            ("By the harbour", 1), ("Fishermen", 1), ("Tourists", 0)]
    task, examples, dataset = load_encode("record", "validation", tokenizer)
    assert [e["label"] for e in examples] == [("Oak Park",), ("Sam Hill",)]
    assert examples[0]["entities"] == ["Hillside", "Oak Park", "Rivertown", "Sam Hill"]
    assert list(dataset.columns["labels"]) == [0, 1, 0, 0, 0, 0, 0, 1]
    assert list(dataset.columns["question_index"]) == [0, 0, 0, 0, 1, 1, 1, 1]
    text = tokenizer.decode(dataset.columns["input_ids"][1], skip_special_tokens=True)
    assert "oak park. - sam" in text  # "@highlight\n" → "- "
    assert text.endswith("the final was played at oak park.")  # the query keeps its place, the passage is cut


def test_ner_labels_sit_on_the_first_sub_token(tokenizer):
    task, examples, dataset = load_encode("conll2003", "train", tokenizer)
    words, tags = examples[0]["words"], examples[0]["tags"]
    assert [task.labels[t] for t in tags] == ["B-PER", "I-PER", "O", "B-LOC", "O", "O", "O"]
    expected = [-100]  # [CLS]
    for word, tag in zip(words, tags):
        pieces = tokenizer.tokenize(word)  # per-word, as the reference derives word positions
        expected += [tag] + [-100] * (len(pieces) - 1)
    expected += [-100] * (dataset.sequence_width - len(expected))
    assert list(dataset.columns["labels"][0]) == expected
    assert len(tokenizer.tokenize("Anna")) > 1  # the alignment above really skips sub-tokens
    ontonotes = get_task("ontonotes").load(fixture("ontonotes"), "validation")[0]
    assert ontonotes["words"] == ["Google", "paid", "$", "5", "on", "Friday", "."]  # column 2 of CoNLL-X rows
    conll04 = get_task("conll2004").load(fixture("conll2004"), "test")  # no blank line at the end
    assert conll04[0]["words"] == ["Kate", "left", "Oslo", "."]


def test_srl_marks_the_predicate(tokenizer):
    task, examples, dataset = load_encode("conll2005", "validation", tokenizer)
    assert examples[1]["predicate"] == 4
    tokens = tokenizer.convert_ids_to_tokens(dataset.columns["input_ids"][1].tolist())
    sentence = tokenizer.tokenize(" ".join(examples[1]["words"]))
    end = 1 + len(sentence)
    assert tokens[:end + 1] == ["[CLS]"] + sentence + ["[SEP]"]
    assert tokens[end + 1:end + 1 + len(tokenizer.tokenize("failed")) + 1] == tokenizer.tokenize("failed") + ["[SEP]"]
    assert dataset.columns["token_type_ids"][1].max() == 0
    labels = dataset.columns["labels"][1]
    assert np.all(labels[end:] == -100)
    assert [task.labels[i] for i in labels[labels != -100]] == ["O", "O", "B-A1", "I-A1", "B-V", "O"]


def test_srl_marks_the_predicate_with_the_literal_word_for_roberta(tmp_path):
    """RoBERTa's separator is </s>; the reference still appends the five characters "[SEP]"."""
    tokenizer = build_byte_level_tokenizer(str(tmp_path))
    task = get_task("conll2005")
    example = task.load(fixture("conll2005"), "validation")[1]
    columns = task.encode([example], tokenizer, None).columns
    assert tokenizer.decode(columns["input_ids"][0]) == "<s> " + " ".join(example["words"]) + " [SEP] failed</s>"
    labelled = np.flatnonzero(columns["labels"][0] != -100)
    word_starts = np.cumsum([1] + [1 + len(word) for word in example["words"][:-1]])  # <s>, then Ġ + characters
    assert list(labelled) == list(word_starts)


def test_srl_tag_inventories_are_fixed_before_any_data_is_read(tmp_path):
    """As the reference's dataset scripts fix them: 106 CoNLL-2005 tags, 116 CoNLL-2012 tags."""
    conll05, conll12 = get_task("conll2005"), get_task("conll2012")
    assert (conll05.num_labels, conll12.num_labels) == (106, 116)
    for task in (conll05, conll12):
        assert task.labels[0] == "O" and list(task.labels[1:]) == sorted(task.labels[1:])
    assert {"B-C-V", "I-C-V", "B-R-AA", "I-AM-TM"} <= set(conll05.labels) and "I-R-AA" not in conll05.labels
    assert {"B-ARGM-LVB", "B-V", "I-ARG5"} <= set(conll12.labels) and "I-V" not in conll12.labels
    before = conll05.labels
    conll05.load(fixture("conll2005"), "test_brown")
    assert conll05.labels is before
    data_dir = copy_fixture("conll2012", tmp_path)
    write(data_dir / "conll2012.devel.txt", "1 She said . ||| B-ARG0 B-V B-ARGM-XYZ\n")
    with pytest.raises(TaskDataError, match=r"conll2012.devel.txt:1: field 'tags': unknown tag 'B-ARGM-XYZ': "
                                            r"not one of the task's 116 tags"):
        conll12.load(str(data_dir), "validation")


def test_tagging_is_cut_only_at_the_model_maximum(tmp_path):
    """The reference tokenizes NER/SRL with truncation=True and no max_length: a 150-word sentence keeps
    its last entity; a given max length or the tokenizer's model_max_length still cut."""
    tokenizer = build_tokenizer(str(tmp_path))
    task = get_task("conll2003")
    assert task.max_seq_length is None  # without --max_seq_length; other tasks keep the reference's lengths
    assert (get_task("rte").max_seq_length, get_task("squad").max_seq_length) == (128, 384)
    location = task.labels.index("B-LOC")
    long = {"words": ["river"] * 150 + ["Paris"], "tags": [0] * 150 + [location]}
    labels = task.encode([long], tokenizer, task.max_seq_length).columns["labels"][0]
    assert (labels != -100).sum() == 151 and labels[labels != -100][-1] == location
    assert task.encode([long], tokenizer, 64).columns["input_ids"].shape == (1, 64)
    tokenizer.model_max_length = 100
    assert task.encode([long], tokenizer, None).columns["input_ids"].shape == (1, 100)


def test_tagging_batches_are_padded_to_a_multiple_of_32(tokenizer):
    task = get_task("conll2003")
    examples = [{"words": ["river"] * count, "tags": [0] * count} for count in (3, 40, 20, 50)]  # 5, 42, 22, 52 tokens
    dataset = task.encode(examples, tokenizer, None)
    assert dataset.sequence_width == 52 and dataset.columns["input_ids"].shape == (4, 52)
    for rows, width in (([0], 32), ([0, 2], 32), ([1], 52), ([2, 1], 52), ([3, 0], 52)):
        batch = dataset.batch(np.array(rows))
        for name in ("input_ids", "attention_mask", "token_type_ids", "labels"):
            assert batch[name].shape == (len(rows), width)
            np.testing.assert_array_equal(batch[name], dataset.columns[name][rows, :width])
    subset = dataset.select(np.array([0, 2]))
    assert subset.batch(np.array([0, 1]))["input_ids"].shape == (2, 32)
    assert np.all(dataset.columns["labels"][[0, 2], 32:] == -100)  # cut off: padding only


@pytest.mark.parametrize("name", QA)
def test_squad_windows_point_at_the_answer(name, tokenizer):
    task, examples, dataset = load_encode(name, "train", tokenizer)
    columns = dataset.columns
    assert len(dataset) > len(examples)  # contexts overflow into overlapping windows
    found = set()
    for window in range(len(dataset)):
        example = examples[columns["example_index"][window]]
        start, end = columns["start_positions"][window], columns["end_positions"][window]
        offsets = columns["offset_mapping"][window]
        if start == 0:
            assert end == 0
            continue
        assert offsets[start, 0] >= 0 and offsets[end, 1] >= 0  # inside the context
        assert example["context"][offsets[start, 0]:offsets[end, 1]] == example["answers"][0][0]
        found.add(example["id"])
    answerable = {e["id"] for e in examples if e["answers"]}
    assert found == answerable
    first = np.flatnonzero(columns["example_index"] == 0)
    assert len(first) > 1
    previous_end = columns["offset_mapping"][first[0]][:, 1].max()
    next_start = min(o for o in columns["offset_mapping"][first[1]][:, 0] if o >= 0)
    assert next_start < previous_end  # windows overlap by the stride
    if name == "squad_v2":
        impossible = [i for i, e in enumerate(examples) if not e["answers"]]
        assert impossible and all(columns["start_positions"][w] == 0 for w in range(len(dataset))
                                  if columns["example_index"][w] in impossible)


# ---- errors -------------------------------------------------------------------------------------

def test_unknown_task_name():
    with pytest.raises(TaskDataError, match=r"unknown task 'conll03' \(did you mean conll2003"):
        get_task("conll03")


def test_missing_split_file_and_directory(tmp_path):
    data_dir = copy_fixture("boolq", tmp_path)
    os.remove(data_dir / "val.jsonl")
    with pytest.raises(TaskDataError, match=r"boolq: missing validation split of task 'boolq': expected file "
                                            r"val.jsonl"):
        get_task("boolq").load(str(data_dir), "validation")
    with pytest.raises(TaskDataError, match=r"for GLUE's RTE tsv files use --task glue_rte"):
        get_task("rte").load(fixture("glue_rte"), "train")
    with pytest.raises(TaskDataError, match=r"boolq: missing validation split of task 'squad': expected file "
                                            r"dev-v1.1.json or dev.json"):
        get_task("squad").load(str(tmp_path / "boolq"), "validation")
    with pytest.raises(TaskDataError, match=r"nowhere: data directory not found"):
        get_task("cola").load(str(tmp_path / "nowhere"), "train")
    with pytest.raises(TaskDataError, match=r"task 'cola' has no split 'dev'; its splits are train, validation, test"):
        get_task("cola").load(fixture("cola"), "dev")


def write(path, text, mode="w"):
    with open(path, mode) as handle:
        handle.write(text)


def test_tsv_column_and_label_errors(tmp_path):
    data_dir = copy_fixture("mnli", tmp_path)
    lines = open(data_dir / "train.tsv").read().splitlines()
    write(data_dir / "train.tsv", "\n".join([lines[0].replace("gold_label", "gold")] + lines[1:]) + "\n")
    with pytest.raises(TaskDataError, match=r"train.tsv:1: missing column 'gold_label'; the header has .*'gold'"):
        get_task("mnli").load(str(data_dir), "train")
    dev = open(data_dir / "dev_matched.tsv").read().splitlines()
    write(data_dir / "dev_matched.tsv", "\n".join(dev[:2] + [dev[2].rsplit("\t", 1)[0] + "\tmaybe"] + dev[3:]) + "\n")
    with pytest.raises(TaskDataError, match=r"dev_matched.tsv:3: field 'gold_label': unknown label 'maybe'; "
                                            r"expected one of 'entailment', 'neutral', 'contradiction'"):
        get_task("mnli").load(str(data_dir), "validation")
    write(data_dir / "test_matched.tsv", "index\tsentence1\n0\tonly one sentence\n")
    with pytest.raises(TaskDataError, match=r"test_matched.tsv:1: missing column 'sentence2'"):
        get_task("mnli").load(str(data_dir), "test")
    data_dir = copy_fixture("cola", tmp_path)
    write(data_dir / "dev.tsv", "ms04\t1\t\tfine\nms04\t1\ttoo few fields\n")
    with pytest.raises(TaskDataError, match=r"dev.tsv:2: expected 4 tab-separated fields .* got 3"):
        get_task("cola").load(str(data_dir), "validation")
    data_dir = copy_fixture("stsb", tmp_path)
    lines = open(data_dir / "dev.tsv").read().splitlines()
    write(data_dir / "dev.tsv", "\n".join(lines[:2] + [lines[2].rsplit("\t", 1)[0] + "\thigh"]) + "\n")
    with pytest.raises(TaskDataError, match=r"dev.tsv:3: field 'score': expected a number, got 'high'"):
        get_task("stsb").load(str(data_dir), "validation")


def test_empty_and_non_utf8_files(tmp_path):
    data_dir = copy_fixture("sst2", tmp_path)
    write(data_dir / "train.tsv", "\n \n")
    with pytest.raises(TaskDataError, match=r"train.tsv: file is empty"):
        get_task("sst2").load(str(data_dir), "train")
    write(data_dir / "dev.tsv", "sentence\tlabel\n")
    with pytest.raises(TaskDataError, match=r"dev.tsv: no data rows"):
        get_task("sst2").load(str(data_dir), "validation")
    write(data_dir / "test.tsv", b"index\tsentence\n0\tfine\n1\tcaf\xe9 au lait\n", mode="wb")
    with pytest.raises(TaskDataError, match=r"test.tsv:3: not UTF-8 text \(byte 0xe9 at column 6\)"):
        get_task("sst2").load(str(data_dir), "test")
    data_dir = copy_fixture("conll2003", tmp_path)
    write(data_dir / "valid.txt", "-DOCSTART- -X- -X- O\n\n")
    with pytest.raises(TaskDataError, match=r"valid.txt: no sentences"):
        get_task("conll2003").load(str(data_dir), "validation")


def test_jsonl_errors(tmp_path):
    data_dir = copy_fixture("boolq", tmp_path)
    lines = open(data_dir / "train.jsonl").read().splitlines()
    write(data_dir / "train.jsonl", "\n".join(lines[:2] + [lines[2][:-5]] + lines[3:]) + "\n")
    with pytest.raises(TaskDataError, match=r"train.jsonl:3: invalid JSON: "):
        get_task("boolq").load(str(data_dir), "train")
    record = json.loads(lines[1])
    del record["passage"]
    write(data_dir / "train.jsonl", "\n".join([lines[0], json.dumps(record)]) + "\n")
    with pytest.raises(TaskDataError, match=r"train.jsonl:2: field 'passage': missing"):
        get_task("boolq").load(str(data_dir), "train")
    record = dict(json.loads(lines[1]), label="yes")
    write(data_dir / "train.jsonl", json.dumps(record) + "\n")
    with pytest.raises(TaskDataError, match=r"train.jsonl:1: field 'label': unknown label 'yes'; expected one of "
                                            r"False, True"):
        get_task("boolq").load(str(data_dir), "train")
    write(data_dir / "val.jsonl", json.dumps(dict(json.loads(lines[1]), question=7)) + "\n")
    with pytest.raises(TaskDataError, match=r"val.jsonl:1: field 'question': expected str, got int 7"):
        get_task("boolq").load(str(data_dir), "validation")
    write(data_dir / "test.jsonl", "[1, 2]\n")
    with pytest.raises(TaskDataError, match=r"test.jsonl:1: expected a JSON object, got list"):
        get_task("boolq").load(str(data_dir), "test")


def test_nested_superglue_errors(tmp_path):
    data_dir = copy_fixture("multirc", tmp_path)
    record = json.loads(open(data_dir / "train.jsonl").read())
    del record["passage"]["questions"][1]["answers"][0]["label"]
    write(data_dir / "train.jsonl", json.dumps(record) + "\n")
    with pytest.raises(TaskDataError, match=r"train.jsonl:1 passage.questions\[1\].answers\[0\]: field 'label': "
                                            r"missing"):
        get_task("multirc").load(str(data_dir), "train")
    data_dir = copy_fixture("record", tmp_path)
    record = json.loads(open(data_dir / "train.jsonl").readline())
    record["passage"]["entities"][1]["end"] = 10_000
    write(data_dir / "train.jsonl", json.dumps(record) + "\n")
    with pytest.raises(TaskDataError, match=r"train.jsonl:1 passage.entities\[1\]: entity span .* outside"):
        get_task("record").load(str(data_dir), "train")
    data_dir = copy_fixture("wsc", tmp_path)
    record = json.loads(open(data_dir / "val.jsonl").readline())
    record["target"]["span2_index"] = 40
    write(data_dir / "val.jsonl", json.dumps(record) + "\n")
    with pytest.raises(TaskDataError, match=r"val.jsonl:1: field 'span2_index': word index 40 outside"):
        get_task("wsc").load(str(data_dir), "validation")
    data_dir = copy_fixture("copa", tmp_path)
    record = dict(json.loads(open(data_dir / "train.jsonl").readline()), question="reason")
    write(data_dir / "train.jsonl", json.dumps(record) + "\n")
    with pytest.raises(TaskDataError, match=r"train.jsonl:1: field 'question': expected 'cause' or 'effect'"):
        get_task("copa").load(str(data_dir), "train")


def test_conll_errors(tmp_path):
    data_dir = copy_fixture("conll2003", tmp_path)
    text = open(data_dir / "train.txt").read()
    write(data_dir / "train.txt", text.replace("Paris NNP B-NP B-LOC", "Paris NNP B-NP B-CITY"))
    with pytest.raises(TaskDataError, match=r"train.txt:6: field 'ner_tag': unknown label 'B-CITY'"):
        get_task("conll2003").load(str(data_dir), "train")
    write(data_dir / "train.txt", text.replace("Paris NNP B-NP B-LOC", "Paris B-LOC"))
    with pytest.raises(TaskDataError, match=r"train.txt:6: expected 4 columns \(token POS chunk NER\), got 2"):
        get_task("conll2003").load(str(data_dir), "train")
    data_dir = copy_fixture("conll2005", tmp_path)
    lines = open(data_dir / "conll05.train.txt").read().splitlines()
    for bad, message in [(lines[1].replace(" |||", ""), r"expected one '\|\|\|'"),
                         (lines[1].replace(" O", ""), r"field 'tags': 7 words but 6 tags"),
                         ("9" + lines[1][1:], r"field 'index': predicate index 9 outside the 7 words"),
                         ("x" + lines[1][1:], r"field 'index': expected the predicate's word index"),
                         (lines[1].replace("B-A2", "A2"), r"field 'tags': unknown tag 'A2'")]:
        write(data_dir / "conll05.train.txt", "\n".join([lines[0], bad]) + "\n")
        with pytest.raises(TaskDataError, match=r"conll05.train.txt:2: " + message):
            get_task("conll2005").load(str(data_dir), "train")


def test_squad_errors(tmp_path):
    data_dir = copy_fixture("squad", tmp_path)
    text = open(data_dir / "dev-v1.1.json").read()
    write(data_dir / "dev-v1.1.json", text.replace('"title": "Blue_Line",', '"title": "Blue_Line"'))
    with pytest.raises(TaskDataError, match=r"dev-v1.1.json: invalid JSON: Expecting ',' delimiter \(line \d+"):
        get_task("squad").load(str(data_dir), "validation")
    document = json.loads(text)
    del document["data"][1]["paragraphs"][0]["qas"][0]["question"]
    write(data_dir / "dev-v1.1.json", json.dumps(document))
    with pytest.raises(TaskDataError, match=r"dev-v1.1.json data\[1\].paragraphs\[0\].qas\[0\]: field 'question': "
                                            r"missing"):
        get_task("squad").load(str(data_dir), "validation")
    document = json.loads(text)
    document["data"][0]["paragraphs"][0]["qas"][1]["answers"][0]["answer_start"] = 5000
    write(data_dir / "dev-v1.1.json", json.dumps(document))
    with pytest.raises(TaskDataError, match=r"qas\[1\].answers\[0\]: field 'answer_start': answer 'a small stone hut' "
                                            r"at 5000 runs outside the context"):
        get_task("squad").load(str(data_dir), "validation")
    document = json.loads(text)
    document["data"][0]["paragraphs"][0]["qas"][1]["id"] = document["data"][0]["paragraphs"][0]["qas"][0]["id"]
    write(data_dir / "dev-v1.1.json", json.dumps(document))
    with pytest.raises(TaskDataError, match=r"qas\[1\]: field 'id': duplicate question id '5b01'"):
        get_task("squad").load(str(data_dir), "validation")
    document["data"][0]["paragraphs"][0]["qas"] = [dict(document["data"][0]["paragraphs"][0]["qas"][0], answers=[])]
    write(data_dir / "dev-v1.1.json", json.dumps(document))
    with pytest.raises(TaskDataError, match=r"qas\[0\]: field 'answers': no answers \(SQuAD v1.1"):
        get_task("squad").load(str(data_dir), "validation")


def test_fast_tokenizer_required(tmp_path):
    from transformers import BertTokenizer

    build_tokenizer(str(tmp_path))
    slow = BertTokenizer(vocab_file=str(tmp_path / "vocab.txt"))
    for name in ("conll2003", "squad"):
        task = get_task(name)
        with pytest.raises(TaskDataError, match="fast tokenizer"):
            task.encode(task.load(fixture(name), "validation"), slow, MAX_LENGTH)

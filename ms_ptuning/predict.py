"""`ms-ptuning predict --adapter DIR --input FILE --output FILE.jsonl`: a trained adapter on new data.

The input is in any format training reads (csv, tsv, json, jsonl, CoNLL .conll/.txt for token
classification, a save_to_disk directory; see ms_ptuning/tasks/records.py), with the text columns the
adapter was trained with (`--text_column_names` to read others). The output has one JSON line per input
record, in input order, each with its place (`line`, or `row` for a saved dataset) and the prediction
(ms_ptuning/predictors.py says what each head writes). Records are read, predicted in batches of
`--batch_size` and written as they go, so memory does not grow with the file; the output appears under
its name once complete (until then it is `OUTPUT.partial`), and an existing file is never replaced
without `--overwrite`.

A record that cannot be read or used (invalid JSON, a missing column, an empty text, bytes that are not
UTF-8) is reported on stderr as `FILE:LINE: ...` and written in its place as `{"line": N, "error": "..."}`;
the other records are still predicted and the exit status is 1. A problem with the whole input (missing,
empty, unknown format, a header without a needed column) or with the adapter stops before anything is
written, with exit status 2. Exit status 0: every record was predicted.
"""

import argparse
import itertools
import json
import os
import sys

from tqdm.auto import tqdm

from .api import load_adapter
from .cli import report_user_errors
from .device.jit import DEFAULT_JIT_LEVEL, JIT_LEVEL_HELP
from .execution import BACKEND_HELP, BACKENDS
from .tasks.base import TaskDataError
from .tasks.records import file_format, iter_records

MAX_REPORTED_ERRORS = 20  # on stderr; every one is in the output file


class Report:
    """What a prediction run did: records predicted, and the records that could not be used."""

    def __init__(self, output: str, show):
        self.output, self.show = output, show
        self.predicted, self.errors = 0, []

    def error(self, message: str) -> None:
        self.errors.append(message)
        if len(self.errors) <= MAX_REPORTED_ERRORS:
            self.show(message)

    def __str__(self) -> str:
        total = self.predicted + len(self.errors)
        text = f"predicted {self.predicted} of {total} records → {self.output}"
        if self.errors:
            text += (f"; {len(self.errors)} could not be read (their lines hold an \"error\" field; first: "
                     f"{self.errors[0]})")
        return text


def check_paths(input_path: str, output_path: str, overwrite: bool) -> None:
    if not os.path.exists(input_path):
        raise TaskDataError(f"{input_path}: file not found")
    if os.path.exists(output_path) and os.path.samefile(input_path, output_path):
        raise TaskDataError(f"--output {output_path} is the input file")
    if os.path.exists(output_path) and not overwrite:
        raise FileExistsError(f"{output_path} exists; pass --overwrite to replace it")


def place(where) -> dict:
    """{"line": N} for a line of a file, {"row": N} for a row of a saved dataset."""
    position = where.position
    return {"row": int(position.split()[-1])} if position.startswith("row") else {"line": int(position)}


def predict_chunk(predictor, chunk: list, report: Report) -> list:
    """The output lines of a chunk of (Where, record or TaskDataError), in input order."""
    slots = []
    for where, record in chunk:
        if not isinstance(record, TaskDataError):
            try:
                record = predictor.example(where, record)
            except TaskDataError as error:
                record = error
        slots.append((where, record))
    examples = [value for _, value in slots if not isinstance(value, TaskDataError)]
    outputs = iter(predictor.predict(examples) if examples else ())
    lines = []
    for where, value in slots:
        if isinstance(value, TaskDataError):
            report.error(str(value))
            result = {**place(where), "error": str(value)}
        else:
            report.predicted += 1
            result = {**place(where), **next(outputs)}
        lines.append(json.dumps(result, ensure_ascii=False) + "\n")
    return lines


def predict_file(model, input_path: str, output_path: str, batch_size: int = 32, split: str = "test",
                 overwrite: bool = False, progress: bool = True) -> Report:
    """Predict every record of `input_path` with an `AdapterModel` (ms_ptuning.api.load_adapter) into
    `output_path` (JSON lines), streaming; see the module docstring for errors and the output."""
    check_paths(input_path, output_path, overwrite)
    predictor = model.predictor
    records = iter_records(input_path, file_format(input_path, predictor.formats), predictor.columns, split,
                           (predictor.columns[0], "tags"))
    first = next(records, None)  # a whole-file problem (empty, missing column) raises here, before any output
    if first is None:
        raise TaskDataError(f"{input_path}: no records")
    report = Report(output_path, show=lambda message: tqdm.write(message, file=sys.stderr))
    partial = f"{output_path}.partial"
    os.makedirs(os.path.dirname(os.path.abspath(output_path)), exist_ok=True)
    try:
        with open(partial, "w", encoding="utf-8") as output, \
                tqdm(desc="predict", unit=" records", disable=not progress) as bar:
            chunks = itertools.chain([first], records)
            while chunk := list(itertools.islice(chunks, batch_size)):
                output.writelines(predict_chunk(predictor, chunk, report))
                output.flush()  # on disk as it goes: nothing but the current chunk is held
                bar.update(len(chunk))
        os.replace(partial, output_path)
    finally:
        if os.path.exists(partial):
            os.remove(partial)
    return report


def parser() -> argparse.ArgumentParser:
    parse = argparse.ArgumentParser(prog="ms-ptuning predict", description=__doc__,
                                    formatter_class=argparse.RawDescriptionHelpFormatter)
    parse.add_argument("--adapter", required=True, help="a trained adapter: OUTPUT_DIR/adapter or best_model, a peft "
                                                         "adapter directory or a THUDM/P-tuning-v2 output directory")
    parse.add_argument("--allow_pickle", action="store_true",
                       help="read THUDM's pytorch_model.bin / peft's adapter_model.bin (unpickling runs code)")
    parse.add_argument("--input", required=True, help="csv, tsv, json, jsonl, .conll/.txt or a save_to_disk dir")
    parse.add_argument("--output", required=True, help="JSON lines file to write")
    parse.add_argument("--model_name_or_path", help="the base model, if not where it was at training time")
    parse.add_argument("--text_column_names", help="input columns, comma-separated (default: the adapter's)")
    parse.add_argument("--split", default="test", help="split of a saved DatasetDict (default: test)")
    parse.add_argument("--batch_size", type=int, default=32)
    parse.add_argument("--max_seq_length", type=int,
                       help="default: the adapter's (a chat adapter: its max_source_length, the prompt tokens kept)")
    parse.add_argument("--overwrite", action="store_true", help="replace an existing --output")
    parse.add_argument("--device_target", default="CPU", help="CPU | GPU | Ascend")
    parse.add_argument("--jit_level", default=DEFAULT_JIT_LEVEL, help=JIT_LEVEL_HELP)
    parse.add_argument("--backend", default="auto", choices=BACKENDS, help=BACKEND_HELP)
    parse.add_argument("--disable_tqdm", action="store_true", help="no progress bar")
    generation = parse.add_argument_group("causal LM generation (ms_ptuning/generation.py)")
    generation.add_argument("--max_new_tokens", type=int, default=50)
    generation.add_argument("--min_new_tokens", type=int, default=0)
    generation.add_argument("--num_beams", type=int, default=1, help="1 = greedy")
    generation.add_argument("--no_repeat_ngram_size", type=int, default=0)
    generation.add_argument("--length_penalty", type=float, default=1.0)
    return parse


def run(args) -> Report:
    check_paths(args.input, args.output, args.overwrite)  # before the model loads: fail fast
    if args.batch_size < 1:
        raise ValueError(f"--batch_size must be >= 1, got {args.batch_size}")
    model = load_adapter(args.adapter, args.model_name_or_path, args.text_column_names, args.max_seq_length,
                         generation_config(args), args.device_target, args.backend, args.batch_size, args.allow_pickle,
                         args.jit_level)
    print(model.backend.describe(), file=sys.stderr)
    return predict_file(model, args.input, args.output, args.batch_size, args.split, args.overwrite,
                        progress=not args.disable_tqdm)


def generation_config(args) -> dict:
    """GenerationConfig fields from the flags (the causal LM predictor adds the tokenizer's eos/pad ids)."""
    return {"max_new_tokens": args.max_new_tokens, "min_new_tokens": args.min_new_tokens,
            "num_beams": args.num_beams, "no_repeat_ngram_size": args.no_repeat_ngram_size,
            "length_penalty": args.length_penalty, "batch_size": args.batch_size}


def main(argv=None) -> int:
    args = parser().parse_args(argv)

    def predict_and_report() -> int:
        report = run(args)
        print(report)
        return 1 if report.errors else 0

    return report_user_errors("ms-ptuning predict", predict_and_report)


if __name__ == "__main__":
    sys.exit(main())

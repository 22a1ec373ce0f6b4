"""`ms-ptuning export --adapter DIR --to peft|thudm --output OUT`: an adapter (ms_ptuning's, or any format
`read_adapter` reads) written as a Hugging Face peft adapter directory or a THUDM/P-tuning-v2 output directory.

The model is built and the adapter loaded as `ms-ptuning predict` does (so a wrong base model is caught), its
prompt/prefix encoder folded to its output table; pairs whose function the target library computes
differently are refused before anything loads, with the difference named.
"""

import argparse
import os
import shutil

from . import peft, read_adapter, thudm

TARGETS = {"peft": peft, "thudm": thudm}


def export(adapter: str, to: str, output: str, model_name_or_path: str = None, allow_pickle: bool = False,
           overwrite: bool = False) -> str:
    """Write `adapter` in format `to` into `output` (written as OUTPUT.partial, renamed when complete; an
    existing non-empty `output` is replaced only with `overwrite`). Returns `output`."""
    if to not in TARGETS:
        raise ValueError(f"--to {to!r}: export writes {', '.join(TARGETS)}")
    if os.path.isdir(output) and os.listdir(output) and not overwrite:
        raise ValueError(f"--output {output} exists and is not empty; pass --overwrite to replace it")
    saved = read_adapter(adapter, model_name_or_path, allow_pickle).config
    head, mode, model_type = saved["head"], saved["ptuning_config"]["mode"], saved["backbone_config"]["model_type"]
    reason = TARGETS[to].refusal(head, mode, model_type)
    if reason:
        raise ValueError(f"{adapter}: cannot export a {head} {mode} adapter on {model_type} to {to}: {reason}")

    from ..api import build_adapter_model  # loads mindnlp: only once the export is known to be possible
    from ..encoders import fold_encoders
    from ..weights import named_weights, to_numpy
    model, saved, _ = build_adapter_model(adapter, model_name_or_path, "eager", allow_pickle)
    fold_encoders(model)
    weights = to_numpy(named_weights(model))
    partial = f"{output}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    if to == "peft":
        encoder = model.encoder.prefix_encoder if mode == "prefix" else model.encoder.prompt_encoder
        peft.write(saved, weights, encoder.output().asnumpy(), partial)
    else:
        thudm.write(saved, weights, partial)
    if os.path.isdir(output):
        shutil.rmtree(output)
    os.replace(partial, output)
    return output


def parser() -> argparse.ArgumentParser:
    parse = argparse.ArgumentParser(prog="ms-ptuning export", description=__doc__.split("\n\n")[0])
    parse.add_argument("--adapter", required=True, help="an ms_ptuning adapter (OUTPUT_DIR/adapter), or a peft / "
                                                         "THUDM directory to convert")
    parse.add_argument("--to", required=True, choices=sorted(TARGETS))
    parse.add_argument("--output", required=True, help="directory to write")
    parse.add_argument("--model_name_or_path", help="the base model, if not where it was at training time")
    parse.add_argument("--allow_pickle", action="store_true", help="read *.bin weights (unpickling runs code)")
    parse.add_argument("--overwrite", action="store_true", help="replace a non-empty --output")
    return parse


def main(argv=None) -> int:
    from ..cli import report_user_errors
    args = parser().parse_args(argv)

    def run() -> int:
        written = export(args.adapter, args.to, args.output, args.model_name_or_path, args.allow_pickle,
                         args.overwrite)
        print(f"exported {args.adapter} → {written} ({args.to})")
        return 0
    return report_user_errors("ms-ptuning export", run)
if __name__ == "__main__":
    import sys
    sys.exit(main())

"""`ms-ptuning COMMAND [flags]`: one console entry for the module entry points."""

import importlib
import json
import sys

COMMANDS = {
    "train": ("ms_ptuning.run", "train and evaluate a task (flags: --help)"),
    "predict": ("ms_ptuning.predict", "predict new inputs with a trained adapter (flags: --help)"),
    "chat": ("ms_ptuning.chat.train", "prompt/response P-tuning of a causal LM, ChatGLM-6B's recipe (flags: --help)"),
    "export": ("ms_ptuning.interop.export", "write an adapter as a peft adapter or THUDM output dir (flags: --help)"),
    "demo": ("ms_ptuning.demo", "offline P-tuning v2 sentiment demo on all-MiniLM-L6-v2"),
    "compare-torch": ("ms_ptuning.parity", "parity table against the PyTorch reference"),
    "compare": ("ms_ptuning.comparison.compare_dirs", "table and curves of finished runs (ours, transformers.Trainer's)"),
}


def report_user_errors(prog: str, command, *args) -> int:
    """`command(*args)`'s exit status, with bad input reported as `prog: error: message` on stderr and exit
    status 2 instead of a stack trace: ValueError (refused flags, TaskDataError naming file:line:field, wrong
    shapes) and OSError (missing files, BackboneLoadError when offline). Any other exception is a bug and
    keeps its traceback."""
    try:
        return command(*args)
    except (ValueError, OSError) as error:
        print(f"{prog}: error: {error}", file=sys.stderr)
        return 2


def run_and_print_results(prog: str, run, arguments) -> int:
    """A training command's main(): `run(*arguments())`, its scalar results printed as JSON on stdout, bad
    input reported as `report_user_errors` does."""
    def run_and_print() -> int:
        results = run(*arguments())
        print(json.dumps({k: v for k, v in results.items() if not isinstance(v, (dict, list))}, indent=2,
                         default=str))
        return 0

    return report_user_errors(prog, run_and_print)


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        width = max(map(len, COMMANDS))
        print("usage: ms-ptuning COMMAND [flags]\n\ncommands:")
        for name, (_, summary) in COMMANDS.items():
            print(f"  {name:<{width}}  {summary}")
        if argv and argv[0] not in ("-h", "--help"):
            print(f"\nunknown command {argv[0]!r}", file=sys.stderr)
            return 2
        return 0
    return importlib.import_module(COMMANDS[argv[0]][0]).main(argv[1:])


if __name__ == "__main__":
    sys.exit(main())

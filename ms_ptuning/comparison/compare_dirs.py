"""`ms-ptuning compare RUN_DIR [RUN_DIR ...] [--output_dir DIR] [--metric NAME]`: the table and curves of runs
that already exist: ms_ptuning's output directories and any `transformers.Trainer` output directory (THUDM's
run.py's). A directory holding run directories (one per seed, as `compare_torch.sh --seeds` leaves them under
ms/ and torch/) is one group, its runs its seeds; with two groups the table adds the difference of the means
and whether it lies within the seeds' spread.
"""

import argparse
import os
import sys

from . import report
from .runs import load_group


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="ms-ptuning compare", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dirs", nargs="+")
    parser.add_argument("--output_dir", default=".", help="where comparison.json and comparison.png go")
    parser.add_argument("--metric", default=None, help="the dev metric (default: the one each run selected by)")
    options = parser.parse_args(argv)
    try:
        groups = {}
        for directory in options.run_dirs:
            name = os.path.basename(os.path.normpath(directory)) or directory
            while name in groups:
                name += "'"
            groups[name] = load_group(directory, options.metric)
    except (OSError, ValueError, KeyError) as error:
        print(f"ms-ptuning compare: error: {error}", file=sys.stderr)
        return 2
    stats = report.summary(groups)
    print(report.table(groups, stats))
    os.makedirs(options.output_dir, exist_ok=True)
    report.write_json(os.path.join(options.output_dir, "comparison.json"), {"run_dirs": options.run_dirs, **stats})
    report.plot(groups, os.path.join(options.output_dir, "comparison.png"))
    print(f"wrote {os.path.join(options.output_dir, 'comparison.json')} and comparison.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())

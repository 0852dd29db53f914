"""The ``pellucid`` command: a thin layer over the library. Every sub-command calls a
function a user can import; choices come from the registries."""

from __future__ import annotations

import argparse
import json
import sys
import traceback
from collections.abc import Sequence
from typing import TextIO

from pellucid.cli import apps, commands, explain
from pellucid.errors import PellucidError


def build_parser() -> argparse.ArgumentParser:
    import pellucid.apps.attacks  # noqa: F401  (fills the attack registry)
    import pellucid.explain  # noqa: F401  (fills the explainer registry)
    from pellucid.registry import ATTACKS, DATASETS, EXPLAINERS, METHODS, MODELS

    parser = argparse.ArgumentParser(
        prog="pellucid",
        description="Interpretable convolutional networks: train, explain, measure.",
        epilog=(
            f"datasets: {', '.join(DATASETS.names())}. models: {', '.join(MODELS.names())}, "
            f"tv:NAME. methods: {', '.join(METHODS.names())}. explainers: "
            f"{', '.join(EXPLAINERS.names())}. attacks: {', '.join(ATTACKS.names())}. "
            "`pellucid COMMAND --help` for a command's options."
        ),
    )
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    commands.add_train(sub, DATASETS, MODELS, METHODS)
    commands.add_import(sub, DATASETS, MODELS, METHODS)
    commands.add_evaluate(sub)
    commands.add_models(sub, MODELS)
    commands.add_datasets(sub, DATASETS)
    commands.add_show_data(sub, DATASETS)
    commands.add_figures(sub)
    explain.add_explain(sub, EXPLAINERS)
    explain.add_compare_explainers(sub, EXPLAINERS)
    explain.add_sanity_check(sub, EXPLAINERS)
    apps.add_localise(sub, EXPLAINERS)
    apps.add_detect_adversarial(sub, ATTACKS)
    commands.add_report(sub)
    commands.add_demo(sub)
    parser.set_defaults(_commands=sub.choices)  # for errors in a command's own words
    return parser


def _unknown_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace, extra: list):
    """Exit (code 2) with the command's own usage for arguments it does not know, suggesting
    the closest option (argparse would print the top-level usage, with no hint)."""
    import difflib

    command = args._commands[args.command]
    options = [o for a in command._actions for o in a.option_strings if o.startswith("--")]
    hints = []
    for word in extra:
        if word.startswith("--"):
            flag = word.split("=")[0]
            # --explainer-option -> --option (a suffix), --attacks -> --attack (a near spelling)
            close = [o for o in options if flag.endswith("-" + o[2:])]
            close += difflib.get_close_matches(flag, options, n=1, cutoff=0.75)
            hints += [f"{flag} -> {close[0]}?"] if close else []
    hint = f" (did you mean: {', '.join(hints)})" if hints else ""
    command.error(f"unrecognized arguments: {' '.join(extra)}{hint}")


def _show_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: TextIO | None = None,
    line: str | None = None,
) -> None:
    """pellucid's own warnings (meant for the user: another image size, fewer images than
    asked for) as one line, like its errors; any other library's in Python's format."""
    import os
    import warnings

    import pellucid

    ours = os.path.dirname(pellucid.__file__)
    if issubclass(category, UserWarning) and str(filename).startswith(ours):
        print(f"pellucid: warning: {message}", file=file or sys.stderr)
    else:
        print(warnings.formatwarning(message, category, filename, lineno, line), end="",
              file=file or sys.stderr)  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit code (0 success, 1 error, 130 interrupted)."""
    import warnings

    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:
        _unknown_arguments(parser, args, extra)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # e.g. to relaunch under torchrun
    try:
        with warnings.catch_warnings():
            if not args.debug:  # --debug keeps Python's format, with the line that warned
                warnings.showwarning = _show_warning
            result = args.func(args)
    except PellucidError as err:
        if args.debug:
            traceback.print_exc()
        lines = [line.strip() for line in str(err).splitlines() if line.strip()]
        print(f"pellucid: error: {' '.join(lines)}", file=sys.stderr)  # one line
        return 1
    except KeyboardInterrupt:
        print("pellucid: interrupted", file=sys.stderr)
        return 130
    except OSError as err:  # the file system: an --out that is a file, not a folder, ...
        if args.debug:
            traceback.print_exc()
        where = f": {err.filename}" if err.filename else ""
        print(
            f"pellucid: error: cannot use the path{where} ({err.strerror or err})", file=sys.stderr
        )
        return 1
    except Exception as err:  # unexpected: one line unless --debug
        if args.debug:
            raise
        print(
            f"pellucid: internal error: {type(err).__name__}: {err} (run with --debug for the "
            "traceback)",
            file=sys.stderr,
        )
        return 1
    if getattr(args, "json", False) and result is not None and _is_main_process():
        from pellucid.io import strict_json

        print(json.dumps(strict_json(result, str), indent=2, sort_keys=True, allow_nan=False))
    return 0


def _is_main_process() -> bool:
    """False on the ranks > 0 of a torchrun group: rank 0 prints for the group."""
    from pellucid.training.distributed import is_main_process

    return is_main_process()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

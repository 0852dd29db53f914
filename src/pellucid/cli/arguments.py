"""Argument helpers shared by the sub-commands: ``KEY=VALUE`` options, the output flags and
the choice of images to explain."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from pellucid.config import yaml_load
from pellucid.errors import ConfigError

__all__ = [
    "Subparsers",
    "common_output",
    "explainer_choice",
    "image_choice",
    "parse_named_options",
    "parse_options",
]

# what ``ArgumentParser.add_subparsers`` returns: each ``add_*`` adds its command to it
Subparsers = argparse._SubParsersAction


#: ``--data-option`` keys that name files or folders (the datasets' ``root``, ``masks`` and
#: ``path``): taken as typed, not as YAML (``imgs #2`` is a name, not ``imgs`` and a comment;
#: ``2024-01-05`` and ``123`` are names, not a date and a number), and made absolute, so
#: that a run trained in one directory is evaluated, explained and reported from any other
PATH_OPTIONS = frozenset({"root", "masks", "path"})


def parse_options(pairs: list[str] | None, flag: str) -> dict[str, Any]:
    """Parse ``key=value`` pairs; values are read as YAML scalars (3 -> int, 0.1 -> float),
    except the paths of ``--data-option`` (:data:`PATH_OPTIONS`)."""
    out: dict[str, Any] = {}
    for pair in pairs or []:
        if "=" not in pair:
            raise ConfigError(f"{flag} expects KEY=VALUE, got {pair!r}")
        key, value = pair.split("=", 1)
        key = key.strip().replace("-", "_")
        if flag == "--data-option" and key in PATH_OPTIONS:
            if not value:
                raise ConfigError(f"{flag} {key}= needs a path")
            out[key] = os.path.abspath(Path(value).expanduser())  # keeps symlinks
        else:
            out[key] = yaml_load(value)
    return out


def parse_named_options(
    pairs: list[str] | None, flag: str, what: str = "NAME"
) -> dict[str, dict[str, Any]]:
    """Parse ``NAME.key=value`` pairs (options of several named things, e.g. explainers or
    attacks; ``what`` names them in errors) into name -> options; a name's ``_`` is read
    back as ``-``."""
    out: dict[str, dict[str, Any]] = {}
    for key, value in parse_options(pairs, flag).items():
        name, dot, option = key.partition(".")
        if not dot or not name or not option:
            raise ConfigError(f"{flag} expects {what}.KEY=VALUE, got {key!r}")
        out.setdefault(name.replace("_", "-"), {})[option] = value
    return out


def common_output(p: argparse.ArgumentParser) -> None:
    """``--quiet`` and ``--json``, which every command that prints results takes."""
    p.add_argument("--quiet", action="store_true", help="no progress bars or summaries")
    p.add_argument("--json", action="store_true", help="print the result as JSON (for scripts)")


def image_choice(p: argparse.ArgumentParser, n: int) -> None:
    """``--n`` and ``--images``: which images of the split to explain."""
    from pellucid.explain.evaluate import IMAGE_PICKS

    p.add_argument("--n", type=int, default=n, help="number of images (see --images)")
    p.add_argument(
        "--images",
        default="spread",
        choices=list(IMAGE_PICKS),
        help="which n images: evenly spaced over the split (default; covers every class of a "
        "class-ordered split) or the first n",
    )


def explainer_choice(p: argparse.ArgumentParser, explainers: Any, n: int, default: str) -> None:
    """``--explainers`` (several, from the registry), ``--option NAME.K=V`` and the image
    choice (:func:`image_choice`): what every command that runs several explainers takes."""
    p.add_argument("--explainers", nargs="+", choices=explainers.names(), help=default)
    p.add_argument("--option", action="append", metavar="NAME.K=V", help="e.g. neuromask.lr=0.05")
    image_choice(p, n)

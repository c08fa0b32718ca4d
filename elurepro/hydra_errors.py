"""Hydra's refusals of a command line, as the one line a newcomer can act on.

Hydra answers a key the config lacks (``optim.lrr=0.1``) with a hint to append it with ``+``,
which only trains with a key nothing reads; the project's own validator knows the section's keys.
A bare word (``mnist_meanact``) is a parse error about a missing ``=``; almost always it is an
experiment. Everything else keeps Hydra's words, on one line.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Sequence
from pathlib import Path

from hydra.errors import HydraException, OverrideParseException
from omegaconf.errors import OmegaConfBaseException

from elurepro.errors import ConfigError

# Hydra 1.3's words for an override of a key the config does not have.
_NOT_IN_CONFIG = re.compile(r"Could not override '[^']+'\.\s*To append to your config use \+(.+)")


def composition_error(err: BaseException, argv: Sequence[str], config_dir: Path) -> str:
    """One line for a command line Hydra refused (``argv`` without the program; ``config_dir``
    the primary config folder, ``configs/``)."""
    args = _parsed(argv)
    if args is None or args.config_path is not None or args.config_dir is not None:
        return hydra_error_line(err)  # a layout of its own: Hydra's words
    from hydra import initialize_config_dir

    try:  # Hydra has cleared its state: compose again, as the command would have
        with initialize_config_dir(config_dir=str(config_dir.resolve()), version_base="1.3"):
            name = args.config_name or "train"
            line = _unknown_key(err, args.overrides, name) or _bare_word(err, args.overrides)
    except Exception:  # best effort only: Hydra's own words follow
        line = None
    return line or hydra_error_line(err)


def hydra_error_line(err: BaseException) -> str:
    """Hydra's multi-line composition error and its cause, as one line."""
    noise = ("full_key:", "object_type=", "See https://", "Config search path", "provider=")

    def lines(e: BaseException | None) -> str:
        kept = [x.strip() for x in str(e or "").splitlines() if x.strip()]
        return " ".join(x for x in kept if not x.startswith(noise))

    line = lines(err) or type(err).__name__
    if err.__cause__ is not None and lines(err.__cause__):
        line += f" ({lines(err.__cause__)})"
    if isinstance(err, OverrideParseException):
        line = f"cannot parse the command line overrides: {line}"
    return line


def _parsed(argv: Sequence[str]) -> argparse.Namespace | None:
    # Hydra's own parser of its command line: overrides apart from -m, --config-dir and the like.
    from hydra._internal.utils import get_args_parser

    try:
        return get_args_parser().parse_args(list(argv))
    except SystemExit:
        return None


def _unknown_key(err: BaseException, overrides: list[str], config_name: str) -> str | None:
    """The validator's line for the config the user meant, each unknown key appended with
    ``+`` as Hydra suggests (the validator refuses those with the section's known keys)."""
    from hydra import compose

    from elurepro.assemble.validate import validate_config

    for _ in overrides:  # one more unknown key per round
        match = _NOT_IN_CONFIG.search(str(err))
        if match is None:
            return None
        overrides = [f"+{o}" if o == match[1].strip() else o for o in overrides]
        try:
            validate_config(compose(config_name=config_name, overrides=overrides))
            return None
        except ConfigError as refused:
            return str(refused)
        except (HydraException, OmegaConfBaseException) as again:
            err = again
    return None


def _bare_word(err: BaseException, overrides: list[str]) -> str | None:
    """A hint for a word without ``=``: ``experiment=<word>`` when it names an experiment."""
    if not isinstance(err, OverrideParseException):
        return None
    bare = [o for o in overrides if "=" not in o and not o.startswith("~")]
    if not bare:
        return None
    experiments = _options("experiment")
    if bare[0] in experiments:
        return f"'{bare[0]}' is not an override (key=value); write experiment={bare[0]}"
    known = f" (experiments: {', '.join(experiments)})" if experiments else ""
    return f"'{bare[0]}' is not an override: write key=value, e.g. experiment=<id>{known}"


def _options(group: str) -> list[str]:
    """The options of a config group on Hydra's search path."""
    from hydra.core.global_hydra import GlobalHydra

    return GlobalHydra.instance().config_loader().get_group_options(group)

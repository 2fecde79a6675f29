"""What every command shares: the one-line error, options made from the settings, loading inputs, printing."""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

from embedlab.settings import ParameterError, Settings, parse_text

S = TypeVar("S", bound=Settings)

PROG = "embedlab"
EMBED_MODELS_HELP = (
    "a backbone name (resnet18, resnet34, resnet50, efficientnet_lite0), a run folder, a checkpoint path or pca"
)


class CommandError(Exception):
    """A command-line input problem; the message is shown as one line."""


def add_arguments(parser: Any, cls: type[Settings], *, skip: tuple[str, ...] = ()) -> None:
    """Add one `--field-name VALUE` option per field of `cls` (except `skip`), so the CLI follows the settings;
    a number's help names its range."""
    for f in dataclasses.fields(cls):
        if f.name not in skip:
            short, span = f.metadata.get("cli"), getattr(f.metadata.get("check"), "range", None)
            text = f"{f.metadata.get('help', '')}{f'; range {span}' if span else ''} (default: {f.default!r})"
            parser.add_argument(
                f"--{f.name.replace('_', '-')}",
                *((f"--{short}",) if short else ()),
                dest=f.name,
                type=parse_text,
                default=argparse.SUPPRESS,
                metavar=f.name.upper(),
                help=text.replace("%", "%%"),
            )


def add_settings(parser: argparse.ArgumentParser, cls: type[Settings], *names: str) -> None:
    """Options `--field-name` for the fields `names` of `cls`: help, default and check come from the settings."""
    unknown = set(names) - set(cls.names())
    if unknown:
        raise TypeError(f"{cls.__name__} has no field(s) {sorted(unknown)}")
    add_arguments(parser, cls, skip=tuple(n for n in cls.names() if n not in names))
    chosen = dict(parser.get_default("settings_fields") or {})
    parser.set_defaults(settings_fields={**chosen, cls.__name__: names})


def settings_from(args: argparse.Namespace, cls: type[S], **values: Any) -> S:
    """The `cls` settings from the options add_settings gave the command (plus `values`), checked; a bad value is
    a one-line CommandError naming the option."""
    names = (getattr(args, "settings_fields", None) or {}).get(cls.__name__, ())
    given = {name: getattr(args, name) for name in names if hasattr(args, name)}
    try:
        return cls.from_mapping({**given, **values})
    except ParameterError as error:
        raise CommandError(_OPTION_NAME.sub(lambda m: _option_flag(cls, m.group(1)), str(error), count=1)) from None


_OPTION_NAME = re.compile(r"^parameter '(\w+)'")


def _option_flag(cls: type[Settings], name: str) -> str:
    """`parameter 'embed_dimensions'` -> `--embed-dimensions (--dimensions)`: the error names the option in both
    spellings the command accepts, whichever was typed."""
    short = next((f.metadata.get("cli") for f in dataclasses.fields(cls) if f.name == name), None)
    return "--" + name.replace("_", "-") + (f" (--{short})" if short else "")


def check_output(path: str | Path, option: str, *, folder: bool = False) -> Path:
    """Fail before any work when `path` (a file, or a folder with `folder`) cannot be written: a parent that is a
    file, a read-only or full disk. The CommandError names the option."""
    target = Path(path).expanduser()
    if folder and target.exists() and not target.is_dir():
        raise CommandError(f"{option} {path} is a file, not a folder")
    if not folder and target.is_dir():
        raise CommandError(f"{option} {path} is a folder: give a file name")
    existing = target if folder else target.parent
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise CommandError(f"{option} {path} cannot be created: {existing} is a file, not a folder")
    try:  # a byte written and synced: read-only folders and full disks fail here, not after the work
        with tempfile.TemporaryFile(dir=existing) as probe:
            probe.write(b"\0" * 4096)
            probe.flush()
            os.fsync(probe.fileno())
    except OSError as error:
        raise CommandError(f"{option} {path} cannot be written: {error.strerror or error} in {existing}") from None
    return target


def check_apart(output: tuple[str, Any], *inputs: tuple[str, Any]) -> None:
    """Fail before any work when the output (option, path) is an input, lies inside an input folder or contains
    one: a command must never overwrite or feed on its own input. One line names both options."""
    if output[1] is None:
        return
    out = Path(output[1]).expanduser().resolve()
    for option, path in inputs:
        if path is None or not Path(path).expanduser().exists():
            continue  # a dataset name or a model name, not a path
        source = Path(path).expanduser().resolve()
        if out == source or out.is_relative_to(source) or source.is_relative_to(out):
            how = "is" if out == source else "lies inside" if out.is_relative_to(source) else "contains"
            raise CommandError(
                f"{output[0]} {output[1]} {how} {option} {path}: write somewhere else, the input would be overwritten"
                f" or read back as input"
            )


def model_file(model: Any) -> Any:
    """The file a --model / BACKBONE option reads: a run directory's exported backbone, else the value itself."""
    if model is not None and Path(model).expanduser().is_dir():
        from embedlab.rundir import RunDir

        return RunDir(Path(model).expanduser()).exported
    return model


def _say(message: str) -> None:
    """Print a result line to stdout (results go to stdout, progress bars to stderr)."""
    print(message, flush=True)


def _load(path: str) -> Any:
    """Load an embeddings file (.pt / .npy / .npz)."""
    from embedlab.embedding import load_embeddings

    if not Path(path).exists():
        raise FileNotFoundError(f"embeddings file not found: {path} (make one with `embedlab embed`)")
    try:
        return load_embeddings(path)
    except (ValueError, RuntimeError) as error:  # name the file when the message does not
        if str(path) in str(error):
            raise
        raise CommandError(f"{path} is not a usable embeddings file: {error}") from error


def _data_dir(args: argparse.Namespace) -> Path:
    """The command's --data-dir (DataSettings.data_dir: a relative path counts from the project root)."""
    from embedlab.settings import DataSettings

    return settings_from(args, DataSettings).data_dir


def _dataset_root(name_or_path: str, data_dir: str | Path, limit: int | None, progress: bool) -> Path:
    """A dataset name (downloaded/prepared into data_dir) or an image folder -> the dataset root."""
    from embedlab import datasets

    if name_or_path not in datasets.DATASETS and not Path(name_or_path).exists():
        raise FileNotFoundError(
            f"{name_or_path!r} is neither a dataset name ({', '.join(sorted(datasets.DATASETS))}) "
            "nor an existing folder"
        )
    return datasets.prepare(name_or_path, data_dir, limit=limit, progress=progress)


def _write_lines(path: str | None, lines: Sequence[str]) -> None:
    """Write lines to a file atomically, or to stdout when no path is given."""
    if path is None:
        for line in lines:
            _say(line)
        return
    from embedlab._io import atomic_open

    with atomic_open(path, "w", encoding="utf-8") as handle:
        handle.writelines(f"{line}\n" for line in lines)
    print(f"wrote {len(lines)} lines to {path}", file=sys.stderr)

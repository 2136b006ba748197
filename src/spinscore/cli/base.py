"""The command group, its error handling and the options shared by the commands."""

from __future__ import annotations

import sys

import click

from spinscore import __version__
from spinscore.errors import SpinscoreError


class _Group(click.Group):
    """Report `SpinscoreError` (and unreadable inputs) as one line unless --debug is given."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except (SpinscoreError, OSError) as exc:
            if ctx.obj and ctx.obj.get("debug"):
                raise
            # an OSError is a path that cannot be read or written (a read-only folder, a file
            # where a folder is expected): its one line names the path
            text = str(exc) if isinstance(exc, SpinscoreError) else \
                f"{exc.filename or ''}: {exc.strerror or exc}".lstrip(": ")
            click.echo(f"error: {' '.join(text.split())}", err=True)
            sys.exit(2)


set_option = click.option("--set", "overrides", multiple=True, metavar="SECTION.KEY=VALUE",
                          help="Override one configuration value (repeatable).")
checkpoint_option = click.option("--checkpoint", required=True, type=click.Path(dir_okay=False),
                                 help="Trained model (checkpoint.pt).")
_config_options = [
    click.option("--config", "config_path", required=True, type=click.Path(dir_okay=False),
                 help="YAML configuration file (see configs/)."),
    set_option,
]


def config_options(f):
    for option in reversed(_config_options):
        f = option(f)
    return f


@click.group(cls=_Group)
@click.version_option(__version__, prog_name="spinscore")
@click.option("--debug", is_flag=True, help="Show full tracebacks.")
@click.pass_context
def main(ctx: click.Context, debug: bool) -> None:
    """Score-based generative models that learn the Hamiltonian of spin chains."""
    ctx.obj = {"debug": debug}


def _validated(cls, values: dict):
    """`cls(**values)` with a validation error as one line naming the option (--per-temperature
    for per_temperature)."""
    from pydantic import ValidationError

    try:
        return cls(**values)
    except ValidationError as exc:
        err = exc.errors()[0]
        if not err["loc"]:  # a check across options
            raise SpinscoreError(err["msg"].removeprefix("Value error, ")) from None
        option = "--" + str(err["loc"][0]).replace("_", "-")
        raise SpinscoreError(f"{option}: {err['msg']} (got {err.get('input')!r})") from None


def check_device(device: str | None) -> None:
    """Refuse a `--device` torch cannot use here, before any work (one line)."""
    if device is None:
        return
    import torch

    try:
        kind = torch.device(device).type
    except (RuntimeError, ValueError) as exc:
        raise SpinscoreError(f"--device: {' '.join(str(exc).split())}") from None
    if kind == "cuda" and not torch.cuda.is_available():
        raise SpinscoreError(f"--device {device}: no CUDA device here (torch "
                             f"{torch.__version__}, CUDA available: no)")

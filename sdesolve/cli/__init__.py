"""The ``sdesolve`` command. Each subcommand lives in its own module of this wing and is registered here.

Nothing in the library imports this module.
"""

from __future__ import annotations

import typer

from .. import __version__
from . import bench, fit_grid, likelihood, sample, train, verify
from ._common import OneLineErrors

app = typer.Typer(
    name="sdesolve",
    cls=OneLineErrors,
    help="Numerically verified score-based diffusion SDEs: sample, verify, likelihood, bench, train, fit-grid.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # plain click help: no boxed panels, no <str>/<bool> metavars on flags
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"sdesolve {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Numerically verified score-based diffusion SDEs: sample, verify, likelihood, bench, train, fit-grid."""


app.command("sample")(sample.sample)
app.command("verify")(verify.verify)
app.command("likelihood")(likelihood.likelihood)
app.command("bench")(bench.bench)
app.command("train")(train.train)
app.command("fit-grid")(fit_grid.fit_grid_command)


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()

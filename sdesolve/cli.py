"""The ``sdesolve`` command. Each subcommand lives in its own ``_cmd_*`` module and is registered here.

Nothing in the library imports this module.
"""

from __future__ import annotations

import typer

from ._cmd_sample import sample

app = typer.Typer(
    name="sdesolve",
    help="Numerically verified score-based diffusion SDEs: sample, verify, likelihood, bench.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _group() -> None:
    """Keep subcommands even while only one is registered (typer runs a lone command as the app itself)."""


app.command("sample")(sample)


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()

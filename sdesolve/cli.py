"""The ``sdesolve`` command. Each subcommand lives in its own ``_cmd_*`` module and is registered here.

Nothing in the library imports this module.
"""

from __future__ import annotations

import typer

from ._cmd_bench import bench
from ._cmd_likelihood import likelihood
from ._cmd_sample import sample
from ._cmd_verify import verify

app = typer.Typer(
    name="sdesolve",
    help="Numerically verified score-based diffusion SDEs: sample, verify, likelihood, bench.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


app.command("sample")(sample)
app.command("verify")(verify)
app.command("likelihood")(likelihood)
app.command("bench")(bench)


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()

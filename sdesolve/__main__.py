"""``python -m sdesolve`` (and ``torchrun -m sdesolve``): the ``sdesolve`` command."""

from .cli import main

main()

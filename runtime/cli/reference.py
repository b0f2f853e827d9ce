"""The ``cqrs`` command as a click command, for the documentation's CLI reference."""

import typer.main

from . import app

cqrs = typer.main.get_command(app)

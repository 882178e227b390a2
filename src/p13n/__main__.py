"""``python -m p13n``: the command line, as the ``p13n`` script."""

from p13n.cli import app

app(prog_name="p13n")

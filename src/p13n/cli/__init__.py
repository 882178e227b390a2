"""The ``p13n`` command line (the ``p13n`` script and ``python -m p13n``): ``app``.

``main`` is the root, which wires in the leaves (``data``, ``generate``, ``personas``, ``adapt``,
``tasks``, ``bench``, ``indirect``, ``recommend``, ``serve``); the leaves share ``common``."""

from p13n.cli.main import app

__all__ = ["app"]

"""``python -m mixsearch``: the command line."""

from .cli import main

main()

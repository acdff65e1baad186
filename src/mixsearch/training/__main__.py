"""``python -m mixsearch.training``: train the bundled model."""

from .train import main

main()

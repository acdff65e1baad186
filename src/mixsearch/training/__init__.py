"""Training the bundled model (``python -m mixsearch.training``; needs the ``[train]`` extra)."""

"""Training the bundled models (needs the ``[train]`` extra): ``python -m mixsearch.training`` trains
mixclip-flickr8k (``train``), ``python -m mixsearch.training.gap`` the heads of mixclip-gap (``gap``)."""

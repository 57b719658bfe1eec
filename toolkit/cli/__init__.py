"""The ``spotkit`` command line: thin click adapters over the domain modules in ``toolkit``."""

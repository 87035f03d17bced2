"""napari plugin for NestNet reconstructions (widgets, reader/writer, sample data).

Everything napari needs is named in ``napari.yaml``; the modules are imported lazily by napari,
so importing this package stays light (no Qt, no torch).
"""

__version__ = "0.1.0"

__all__ = ["__version__"]

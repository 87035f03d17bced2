"""napari plugin for NestNet reconstructions (widgets, reader/writer, sample data)."""

__version__ = "0.1.0"

"""napari plugin for sam-med (reader, writer, widget). Imported by napari only."""

"""Pure functions on boxes, masks and RLE."""

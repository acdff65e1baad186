"""mixsearch: mixed modality search with modality-gap calibration (GR-CLIP)."""

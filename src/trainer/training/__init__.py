"""Training: the tracked run around the YOLOv5 child (runner), the child process, reporting, datasets, downloads."""

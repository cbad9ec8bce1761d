"""The MLflow Model: the pyfunc model file (detector_model, imports nothing from trainer), logging, publishing,
promotion and `trainer predict`."""

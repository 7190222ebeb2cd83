"""The ``ubdiff-onnx`` command line (typer). Heavy imports happen inside each command."""

"""The clone's scripts (``to_onnx.py``, ``demo.py``) and the STS data loader (``sts``), importable
as ``export.sts`` by the tests and the benchmarks."""

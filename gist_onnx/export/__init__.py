"""The export tool: a torch sentence-transformers model to fused, checked ONNX graphs.

    gist-onnx export --output gist-onnx-model --quantize

Needs the ``export`` extra (torch, transformers, sentence-transformers, onnx):
``pip install 'gist-onnx[export]'``. The runtime (``import gist_onnx``, ``GistEncoder``) never
imports this package.

Modules, in the order the export runs them: ``graph`` (torch to ONNX, fused), ``quantize`` (the
int8 graph), ``check`` (each graph through the runtime against sentence-transformers), with
``texts`` (the built-in check and calibration texts) and ``to_onnx`` (the command).
"""

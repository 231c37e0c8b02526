"""The export tool: a torch sentence-transformers model to fused, checked ONNX graphs.

    gist-onnx export --output gist-onnx-model --quantize

Needs the ``export`` extra (torch, transformers, sentence-transformers, onnx):
``pip install 'gist-onnx[export]'``. The runtime (``import gist_onnx``, ``GistEncoder``) never
imports this package.

Modules: ``to_onnx`` (the command: arguments, staging folder, swap, exit codes) runs ``build``
(the steps of one export, in order), which uses ``graph`` (torch to ONNX, fused, pre-optimized),
``quantize`` (calibration, bias folding, the GELU rewrite), ``rowwise`` (the int8 products),
``sequence_major`` (the int8 graph's activation order), ``check`` (each graph through the
runtime against sentence-transformers) and ``texts`` (the built-in check and calibration texts).
"""

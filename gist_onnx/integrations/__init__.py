"""Adapters for the frameworks users already run, each a thin layer over ``GistEncoder``'s public
API, each importing its framework only when used (its extra names it):

- ``gist_onnx.integrations.pandas``: ``embed_series``, for Spark's ``pandas_udf`` and Dask's
  ``map_partitions`` (pandas only);
- ``gist_onnx.integrations.ray``: ``GistEmbedder``, a callable class for Ray Data's
  ``map_batches`` (``ray`` extra);
- ``gist_onnx.integrations.langchain``: ``GistEmbeddings`` (``langchain`` extra);
- ``gist_onnx.integrations.llama_index``: ``GistEmbedding`` (``llama-index`` extra);
- ``gist_onnx.integrations.chroma``: ``GistEmbeddingFunction`` (``chroma`` extra).
"""

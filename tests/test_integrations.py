"""Integrations tier: each adapter against its real package (installed by `make setup`; a test
skips where its package is absent): pandas/Dask, Ray Data, LangChain, LlamaIndex, Chroma."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from gist_onnx import GistEncoder

pytestmark = [pytest.mark.model, pytest.mark.integrations]

DOCS = [
    "Paris is the capital and largest city of France.",
    "Sourdough bread rises slowly with a wild yeast starter.",
    "The Pacific is the largest and deepest ocean on Earth.",
    "A guitar has six strings, tuned E A D G B E.",
]
QUERY = "What is the capital of France?"


@pytest.fixture(scope="module")
def encoder(exported: Path) -> GistEncoder:
    return GistEncoder(exported, variant="int8")


def test_pandas_series_and_dask_map_partitions(exported: Path, encoder: GistEncoder) -> None:
    pd = pytest.importorskip("pandas")
    from gist_onnx.integrations.pandas import embed_series

    texts = pd.Series(DOCS * 5, index=range(100, 120), name="text")
    out = embed_series(texts, model=exported, variant="int8")
    assert list(out.index) == list(texts.index)
    np.testing.assert_allclose(np.stack(out.to_list()), encoder.encode(texts.tolist()), atol=1e-6)

    dd = pytest.importorskip("dask.dataframe")
    distributed = pytest.importorskip("dask.distributed")
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster),
    ):
        frame = dd.from_pandas(pd.DataFrame({"text": DOCS * 5}), npartitions=4)
        vectors = (
            frame["text"]
            .map_partitions(embed_series, model=str(exported), variant="int8", meta=("text", "O"))
            .compute()
        )
    np.testing.assert_allclose(np.stack(vectors.to_list()), encoder.encode(DOCS * 5), atol=1e-6)


# Ray 2.60's Ray Data sets deprecated options of its own (use_push_based_shuffle, use_polars...)
# as it starts: its warnings, not ours.
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_ray_data_map_batches_on_a_local_cluster(exported: Path, encoder: GistEncoder) -> None:
    ray = pytest.importorskip("ray")
    from gist_onnx.integrations.ray import GistEmbedder

    texts = [f"{doc} ({i})" for i, doc in enumerate(DOCS * 25)]
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        ds = ray.data.from_items([{"text": t, "n": i} for i, t in enumerate(texts)])
        rows = ds.map_batches(
            GistEmbedder,
            fn_constructor_kwargs={"model": str(exported), "variant": "int8"},
            compute=ray.data.ActorPoolStrategy(size=2),
            num_cpus=0.5,  # two actors at 1 CPU each on 2 CPUs leave none for reading: they hang
            batch_size=16,
            batch_format="numpy",
        ).take_all()
    finally:
        ray.shutdown()
    rows.sort(key=lambda row: row["n"])
    assert [row["text"] for row in rows] == texts
    np.testing.assert_allclose(
        np.stack([row["embedding"] for row in rows]), encoder.encode(texts), atol=1e-6
    )


@contextlib.contextmanager
def graph_batches(encoder: GistEncoder) -> Iterator[list[int]]:
    """The size of each batch ``encoder`` runs through its graph while the block runs."""
    sizes: list[int] = []
    original = encoder.engine.compute

    def counted(texts: list[str], *args: Any, **kwargs: Any) -> Any:
        sizes.append(len(texts))
        return original(texts, *args, **kwargs)

    encoder.engine.compute = counted  # type: ignore[method-assign]
    try:
        yield sizes
    finally:
        encoder.engine.compute = original  # type: ignore[method-assign]


def test_langchain_embeddings_and_a_vector_store(exported: Path, encoder: GistEncoder) -> None:
    pytest.importorskip("langchain_core")
    from langchain_core.vectorstores import InMemoryVectorStore

    from gist_onnx.integrations.langchain import GistEmbeddings

    embeddings = GistEmbeddings(exported, variant="int8")
    np.testing.assert_allclose(embeddings.embed_documents(DOCS), encoder.encode(DOCS), atol=1e-6)
    np.testing.assert_allclose(embeddings.embed_query(QUERY), encoder.encode_one(QUERY), atol=1e-6)
    assert asyncio.run(embeddings.aembed_query(QUERY)) == embeddings.embed_query(QUERY)
    assert asyncio.run(embeddings.aembed_documents(DOCS)) == embeddings.embed_documents(DOCS)
    # Concurrent async queries share graph runs (GistEncoder.aencode), with the same vectors.

    async def many() -> list[list[float]]:
        return list(await asyncio.gather(*(embeddings.aembed_query(d) for d in DOCS)))

    with graph_batches(embeddings.encoder) as runs:
        assert asyncio.run(many()) == embeddings.embed_documents(DOCS)
    assert sum(runs) == len(DOCS) and len(runs) < len(DOCS)
    store = InMemoryVectorStore.from_texts(DOCS, embeddings)
    assert store.similarity_search(QUERY, k=1)[0].page_content == DOCS[0]


def test_llama_index_embedding_and_retrieval(exported: Path, encoder: GistEncoder) -> None:
    pytest.importorskip("llama_index.core")
    from llama_index.core import Document, VectorStoreIndex

    from gist_onnx.integrations.llama_index import GistEmbedding

    model = GistEmbedding(model=str(exported), variant="int8")
    np.testing.assert_allclose(
        model.get_query_embedding(QUERY), encoder.encode_one(QUERY), atol=1e-6
    )
    np.testing.assert_allclose(
        model.get_text_embedding_batch(DOCS), encoder.encode(DOCS), atol=1e-6
    )
    assert asyncio.run(model.aget_query_embedding(QUERY)) == model.get_query_embedding(QUERY)
    # An async batch is one graph batch, not one per text.
    with graph_batches(model._encoder) as calls:
        batch = asyncio.run(model.aget_text_embedding_batch(DOCS))
    assert calls == [len(DOCS)]
    np.testing.assert_allclose(batch, encoder.encode(DOCS), atol=1e-6)
    index = VectorStoreIndex.from_documents([Document(text=d) for d in DOCS], embed_model=model)
    best = index.as_retriever(similarity_top_k=1).retrieve(QUERY)[0]
    assert best.node.get_content() == DOCS[0]


def test_chroma_collection_add_and_query(exported: Path, encoder: GistEncoder) -> None:
    chromadb = pytest.importorskip("chromadb")
    from gist_onnx.integrations.chroma import GistEmbeddingFunction

    function = GistEmbeddingFunction(model=str(exported), variant="int8")
    assert GistEmbeddingFunction.name() == "gist-onnx"
    rebuilt = GistEmbeddingFunction.build_from_config(function.get_config())
    np.testing.assert_allclose(rebuilt(DOCS), encoder.encode(DOCS), atol=1e-6)
    client = chromadb.EphemeralClient()
    docs = client.create_collection("docs", embedding_function=function)
    docs.add(ids=[str(i) for i in range(len(DOCS))], documents=DOCS)
    found = docs.query(query_texts=[QUERY], n_results=1)
    assert found["documents"][0][0] == DOCS[0]


def test_a_persisted_chroma_collection_reopens_in_a_new_process_and_refuses_a_variant_change(
    exported: Path, tmp_path: Path
) -> None:
    """Made in one process; reopened in a fresh one (where importing the module registers the
    function), queried; reopened with another variant: refused, the vectors would not compare."""
    pytest.importorskip("chromadb")
    import subprocess
    import sys
    import textwrap

    make = textwrap.dedent(f"""
        import chromadb
        from gist_onnx.integrations.chroma import open_collection
        client = chromadb.PersistentClient({str(tmp_path / "db")!r})
        docs = open_collection(client, "docs", model={str(exported)!r}, variant="int8")
        docs.add(ids=["0", "1"], documents={DOCS[:2]!r})
    """)
    reopen = textwrap.dedent(f"""
        import chromadb
        import gist_onnx.integrations.chroma as chroma
        client = chromadb.PersistentClient({str(tmp_path / "db")!r})
        found = client.get_collection("docs").query(query_texts=[{QUERY!r}], n_results=1)
        assert found["documents"][0][0] == {DOCS[0]!r}, found
        try:
            chroma.open_collection(client, "docs", model={str(exported)!r}, variant="fp32")
        except chroma.InvalidInputError as exc:
            print("refused:", exc)
    """)
    env = {**os.environ, "ANONYMIZED_TELEMETRY": "False"}
    for script in (make, reopen):
        proc = subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, env=env, check=False
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
    assert "refused: This collection holds vectors of" in proc.stdout
    assert "variant='int8'" in proc.stdout and "variant='fp32'" in proc.stdout

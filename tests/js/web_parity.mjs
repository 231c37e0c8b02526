// The web export in Node.js, two ways: transformers.js's feature-extraction pipeline (mean
// pooling and normalization in JavaScript, as its users call it), and onnxruntime-web (WASM)
// with the same tokenizer and the pooling written out here. Prints each variant's vectors and
// token counts as JSON for tests/test_web.py to compare with gist-onnx's Python vectors.
// usage: node web_parity.mjs EXPORT_FOLDER TEXTS_JSON_FILE
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { AutoTokenizer, env, pipeline } from "@huggingface/transformers";
import * as ort from "onnxruntime-web";

const [folder, textsFile] = process.argv.slice(2);
const texts = JSON.parse(readFileSync(textsFile, "utf8"));
env.localModelPath = folder; // the export folder: "web" is the model id under it
env.allowRemoteModels = false;

const out = { transformers: {}, ortweb: {} };
const median = (xs) => xs.slice().sort((a, b) => a - b)[Math.floor(xs.length / 2)];
for (const dtype of ["fp32", "int8"]) {
  let started = performance.now();
  const extractor = await pipeline("feature-extraction", "web", { dtype, device: "cpu" });
  const load_ms = performance.now() - started;
  const vectors = await extractor(texts, { pooling: "mean", normalize: true });
  const encoded = extractor.tokenizer(texts, { padding: true, truncation: true });
  const counts = encoded.attention_mask.sum(1).tolist().map(Number);
  const query_ms = [];
  for (let i = 0; i < 21; i++) {
    started = performance.now();
    await extractor(`what is the capital of france ${i}`, { pooling: "mean", normalize: true });
    query_ms.push(performance.now() - started);
  }
  out.transformers[dtype] = {
    vectors: vectors.tolist(),
    counts,
    load_ms,
    query_ms: median(query_ms.slice(1)),
  };
  await extractor.dispose();
}

// onnxruntime-web: the graph file itself, tokenized by the web folder's tokenizer.
const tokenizer = await AutoTokenizer.from_pretrained("web");
ort.env.wasm.numThreads = 1;
for (const [dtype, file] of [["fp32", "model.onnx"], ["int8", "model_int8.onnx"]]) {
  const bytes = readFileSync(join(folder, "web", "onnx", file));
  const session = await ort.InferenceSession.create(bytes, { executionProviders: ["wasm"] });
  const vectors = [];
  for (const text of texts) {
    // One text a run: no padding, so the mean is over every token the model reads.
    const encoded = tokenizer([text], { truncation: true });
    const ids = encoded.input_ids.tolist()[0].map(BigInt);
    const n = ids.length;
    const feeds = {
      input_ids: new ort.Tensor("int64", BigInt64Array.from(ids), [1, n]),
      attention_mask: new ort.Tensor("int64", new BigInt64Array(n).fill(1n), [1, n]),
    };
    if (session.inputNames.includes("token_type_ids")) {
      feeds.token_type_ids = new ort.Tensor("int64", new BigInt64Array(n), [1, n]);
    }
    const result = await session.run(feeds);
    const hidden = result.last_hidden_state.data;
    const dim = result.last_hidden_state.dims[2];
    const mean = new Float64Array(dim);
    for (let t = 0; t < n; t++) for (let d = 0; d < dim; d++) mean[d] += hidden[t * dim + d] / n;
    const norm = Math.max(Math.hypot(...mean), 1e-12);
    vectors.push(Array.from(mean, (v) => v / norm));
  }
  out.ortweb[dtype] = { vectors };
  await session.release();
}
console.log(JSON.stringify(out));

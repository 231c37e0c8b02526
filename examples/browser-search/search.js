// Semantic search over sentences.json, in the page: the web export's int8 graph through
// transformers.js (WASM). Layout served beside this file:
//   vendor/transformers.min.js, vendor/ort-wasm-simd-threaded*.{mjs,wasm} (ONNX Runtime's WASM)
//   model/web/...   (the `web` folder of `gist-onnx export --quantize --web`)
//   sentences.json
const here = (path) => new URL(path, import.meta.url).href;
const { env, pipeline } = await import(here("./vendor/transformers.min.js"));

env.allowRemoteModels = false;
env.allowLocalModels = true; // "local" in a page: fetched from localModelPath, this site
// A path on this site, not a full URL: transformers.js looks for a tokenizer only on paths.
env.localModelPath = new URL("./model/", import.meta.url).pathname;
env.backends.onnx.wasm.wasmPaths = here("./vendor/");
env.backends.onnx.wasm.numThreads = 1; // threads need cross-origin isolation headers

const status = document.getElementById("status");
const button = document.getElementById("search");
const timings = {};

const failed = (reason) => {
  status.textContent = `Failed: ${reason}`;
  window.gistError = String(reason); // what the test reports
};
window.addEventListener("unhandledrejection", (event) => failed(event.reason));
window.addEventListener("error", (event) => failed(event.message));

let started = performance.now();
// No dtype: the web folder's config.json makes int8 the browser's default (dtype: "fp32" for
// the larger graph).
const extractor = await pipeline("feature-extraction", "web");
timings.load_ms = performance.now() - started;

const sentences = await (await fetch(here("./sentences.json"))).json();
started = performance.now();
const corpus = (await extractor(sentences, { pooling: "mean", normalize: true })).tolist();
timings.corpus_ms = performance.now() - started;
status.textContent = `${sentences.length} sentences embedded in ${(timings.corpus_ms / 1000).toFixed(1)} s ` +
  `(model loaded in ${(timings.load_ms / 1000).toFixed(1)} s).`;

async function search(query) {
  const started = performance.now();
  const [vector] = (await extractor([query], { pooling: "mean", normalize: true })).tolist();
  const query_ms = performance.now() - started;
  const scored = corpus.map((row, i) => [row.reduce((s, x, d) => s + x * vector[d], 0), i]);
  scored.sort((a, b) => b[0] - a[0]);
  const top = scored.slice(0, 5);
  const list = document.getElementById("results");
  list.replaceChildren(...top.map(([score, i]) => {
    const item = document.createElement("li");
    item.innerHTML = `<span class="score">${score.toFixed(3)}</span>`;
    item.append(sentences[i]);
    return item;
  }));
  status.textContent = `Query embedded in ${query_ms.toFixed(1)} ms; ${sentences.length} sentences ranked.`;
  // What the test reads back (tests/test_web.py).
  window.gistLastQuery = { query, vector, top: top.map(([s, i]) => [i, s]), query_ms, ...timings };
}

document.getElementById("form").addEventListener("submit", (event) => {
  event.preventDefault();
  search(document.getElementById("query").value);
});
button.disabled = false;
window.gistCorpus = corpus;
window.gistReady = true;

// The official OpenAI JavaScript SDK against a running `gist-onnx serve`: the calls an app makes,
// printed as JSON for tests/test_openai_js.py to check against the Python encoder.
// usage: node conformance.mjs BASE_URL MODEL
import OpenAI from "openai";

const [baseURL, model] = process.argv.slice(2);
const client = new OpenAI({ baseURL, apiKey: "unused", maxRetries: 0 });
const out = {};

out.models = (await client.models.list()).data.map((m) => m.id);
const floats = await client.embeddings.create({
  model,
  input: ["What is the capital of France?", "bread"],
  encoding_format: "float",
});
out.float = floats.data.map((d) => d.embedding);
out.usage = floats.usage;
out.model = floats.model;
// Without encoding_format the SDK asks for base64 and decodes it into numbers itself.
const packed = await client.embeddings.create({ model, input: "What is the capital of France?" });
out.base64 = packed.data.map((d) => Array.from(d.embedding));

async function failure(request) {
  try {
    await client.embeddings.create(request);
    return null;
  } catch (error) {
    return {
      kind: error.constructor.name,
      status: error.status,
      code: error.code,
      param: error.param,
      type: error.type,
    };
  }
}
out.unknown_model = await failure({ model: "text-embedding-3-small", input: "a" });
out.empty_input = await failure({ model, input: ["a", ""] });
console.log(JSON.stringify(out));

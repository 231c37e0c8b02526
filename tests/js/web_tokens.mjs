// The web export's tokenizer in Node.js, as transformers.js runs it: reads one JSON string a
// line on stdin and answers each with the token ids (truncated to the model's limit) as a JSON
// line on stdout, so that a test can ask about many texts from one process.
// usage: node web_tokens.mjs EXPORT_FOLDER
import { createInterface } from "node:readline";
import { AutoTokenizer, env } from "@huggingface/transformers";

const [folder] = process.argv.slice(2);
env.localModelPath = folder; // the export folder: "web" is the model id under it
env.allowRemoteModels = false;
const tokenizer = await AutoTokenizer.from_pretrained("web");
process.stdout.write("ready\n");
for await (const line of createInterface({ input: process.stdin })) {
  const text = JSON.parse(line);
  const ids = tokenizer([text], { truncation: true }).input_ids.tolist()[0].map(Number);
  process.stdout.write(JSON.stringify(ids) + "\n");
}

// Runs llama.cpp (node-llama-cpp's prebuilt CPU build) on a GGUF and prints JSON:
//   node llama_probs.mjs MODEL.gguf --ids "1 2 3" [--last K] [--lora ADAPTER.gguf]
//                                                                -> next-token distributions of the last K positions
//   node llama_probs.mjs MODEL.gguf --text STR                   -> {"tokens": [...]} (llama.cpp's tokenization,
//                                                                   special tokens recognised, no BOS)
// Output: {"n_vocab": V, "tokens": [...], "positions": [{"pos": t, "probs": [V floats], "logits": [V floats]}]}.
// `probs` is llama.cpp's own next-token probability list (default sampling options), `logits` the raw logits.
// Needs scripts/fetch_llama_node.sh (installs node-llama-cpp under .testdata/node); NODE_LLAMA_DIR overrides.
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const nodeDir = process.env.NODE_LLAMA_DIR || path.join(here, "..", "..", ".testdata", "node");
const { getLlama, LlamaLogLevel } = await import(
  pathToFileURL(path.join(nodeDir, "node_modules", "node-llama-cpp", "dist", "index.js")).href);

const args = process.argv.slice(2);
const modelPath = args[0];
const opt = (name, def) => {
  const i = args.indexOf(name);
  return i >= 0 && i + 1 < args.length ? args[i + 1] : def;
};
if (!modelPath) {
  console.error("usage: llama_probs.mjs MODEL.gguf (--ids \"1 2 3\" [--last K] | --text STR)");
  process.exit(1);
}

const llama = await getLlama({ gpu: false, build: "never", logLevel: LlamaLogLevel.error });
const model = await llama.loadModel({ modelPath, gpuLayers: 0 });
const text = opt("--text", null);
if (text !== null) {
  const tokens = model.tokenize(text, true);
  process.stdout.write(JSON.stringify({ tokens: Array.from(tokens) }) + "\n");
  await model.dispose();
  process.exit(0);
}
const ids = opt("--ids", "").trim().split(/[\s,]+/).filter((s) => s.length).map(Number);
const last = Math.max(1, Math.min(ids.length, Number(opt("--last", "1"))));
const lora = opt("--lora", null);  // a LoRA adapter GGUF applied at scale 1
const context = await model.createContext({ contextSize: Math.max(64, ids.length + 8), threads: 2,
                                            ...(lora ? { lora } : {}) });
const seq = context.getSequence();
const input = ids.map((t, i) =>
  i >= ids.length - last ? [t, { generateNext: { probabilities: true, logits: true } }] : t);
const res = await seq.controlledEvaluate(input);
const positions = [];
let V = 0;
for (let i = ids.length - last; i < ids.length; ++i) {
  const next = res[i] && res[i].next;
  if (!next) throw new Error(`no output for position ${i}`);
  const logitsMap = next.logits;
  for (const k of logitsMap.keys()) V = Math.max(V, k + 1);
  for (const k of next.probabilities.keys()) V = Math.max(V, k + 1);
  const logits = new Array(V).fill(null), probs = new Array(V).fill(0);
  for (const [k, v] of logitsMap) logits[k] = v;
  for (const [k, v] of next.probabilities) probs[k] = v;
  positions.push({ pos: i, probs, logits });
}
process.stdout.write(JSON.stringify({ n_vocab: V, tokens: ids, positions }) + "\n");
await context.dispose();
await model.dispose();

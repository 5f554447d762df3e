// Decode speed of llama.cpp (node-llama-cpp's prebuilt CPU build, .testdata/node) on one GGUF, the counterpart
// of bench_decode: the same prompt ids (1000 + 37 i mod V) in one batch, then greedy decode steps, timed on the
// wall clock from the first generated token to the last. Prints one JSON line, with llama.cpp's own
// llama_perf "eval" rate (decode steps without sampling) when it reports one.
//   node llama_decode.mjs MODEL.gguf [--prompt-tokens 32] [--gen-tokens 64] [--threads 2]
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const nodeDir = process.env.NODE_LLAMA_DIR || path.join(here, "..", ".testdata", "node");
const { getLlama, LlamaLogLevel } = await import(
  pathToFileURL(path.join(nodeDir, "node_modules", "node-llama-cpp", "dist", "index.js")).href);

const args = process.argv.slice(2);
const modelPath = args[0];
const opt = (name, def) => {
  const i = args.indexOf(name);
  return i >= 0 && i + 1 < args.length ? Number(args[i + 1]) : def;
};
const promptTokens = opt("--prompt-tokens", 32), genTokens = opt("--gen-tokens", 64), threads = opt("--threads", 2);

let perfLog = "";
const llama = await getLlama({
  gpu: false, build: "never", logLevel: LlamaLogLevel.info,
  logger: (level, message) => { perfLog += message; },
});
const model = await llama.loadModel({ modelPath, gpuLayers: 0 });
const context = await model.createContext({
  contextSize: Math.max(256, promptTokens + genTokens + 16), threads, performanceTracking: true });
const seq = context.getSequence();
const V = model.tokens.sizes?.vocabulary ?? model.fileInsights.modelInfo?.vocabSize ?? 151936;
const prompt = Array.from({ length: promptTokens }, (_, i) => (1000 + 37 * i) % V);

const tPrefill = performance.now();
let tFirst = 0, n = 0;
const ids = [];
for await (const token of seq.evaluate(prompt, { temperature: 0 })) {
  if (n === 0) tFirst = performance.now();
  ids.push(token);
  if (++n > genTokens) break;
}
const tEnd = performance.now();
perfLog = "";
await context.printTimings();
// llama_perf_context_print's "eval time = X ms / N runs" (not its "prompt eval time" line).
const m = [...perfLog.matchAll(/(prompt )?eval time\s*=\s*([\d.]+)\s*ms\s*\/\s*(\d+)\s*runs/g)].find((x) => !x[1]);
const evalTokS = m ? Number(m[3]) / (Number(m[2]) / 1000) : null;
process.stdout.write(JSON.stringify({
  engine: "llama.cpp", model: modelPath, threads, prompt_tokens: promptTokens, gen_tokens: genTokens,
  prefill_tok_s: Number((promptTokens / ((tFirst - tPrefill) / 1000)).toFixed(2)),
  decode_tok_s: Number((genTokens / ((tEnd - tFirst) / 1000)).toFixed(2)),
  llama_perf_eval_tok_s: evalTokS === null ? null : Number(evalTokS.toFixed(2)),
  first_ids: ids.slice(1, 5),
}) + "\n");
await context.dispose();
await model.dispose();

// The bench's peer: transformers.js (pinned in ./package.json, installed here only) on the same model, under Node,
// where it runs onnxruntime-node. Prints one JSON line per round: prefill and decode tokens/s of greedy generate.
// Usage: node bench/peer/transformers_js.mjs MODEL_DIR DTYPE(fp32|q4) PROMPT_LEN NEW_TOKENS ROUNDS THREADS
import { AutoModelForCausalLM, env, Tensor } from "@huggingface/transformers";
import { basename, dirname } from "node:path";

const [dir, dtype, promptLen, newTokens, rounds, threads] = process.argv.slice(2);
env.allowRemoteModels = false;
env.localModelPath = dirname(dir) + "/";
const model = await AutoModelForCausalLM.from_pretrained(basename(dir), {
  dtype,
  device: "cpu",
  local_files_only: true,
  session_options: { intraOpNumThreads: Number(threads) },
});
const n = Number(promptLen);
const ids = new Tensor("int64", BigInt64Array.from({ length: n }, (_, i) => BigInt(100 + ((i * 37) % 1000))), [1, n]);
const mask = new Tensor("int64", new BigInt64Array(n).fill(1n), [1, n]);
const gen = async (k) => {
  const t = performance.now();
  const out = await model.generate({
    input_ids: ids,
    attention_mask: mask,
    max_new_tokens: k,
    min_new_tokens: k,
    do_sample: false,
  });
  return [performance.now() - t, out];
};
await gen(2); // warm-up
for (let r = 0; r < Number(rounds); r++) {
  const [one] = await gen(1);
  const [many, out] = await gen(Number(newTokens) + 1);
  const tokens = Array.from(out.data.slice(n), Number);
  console.log(
    JSON.stringify({ prefillTokS: n / (one / 1000), decodeTokS: Number(newTokens) / ((many - one) / 1000), tokens }),
  );
}
await model.dispose();

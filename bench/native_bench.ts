/**
 * The native backend (`device: "native"`, onnxruntime-node) against the
 * WebAssembly one (`device: "wasm"`, onnxruntime-web), and transformers.js
 * as the peer, on a model of SmolLM2-135M's shape (random weights, exported
 * with a KV cache as Optimum does) with a PEFT LoRA r=16 on all seven
 * projections in dynamic mode. Setup (once):
 *
 * ```sh
 * python bench/support/make_smollm_shape.py DIR          # DIR/base (fp32) and DIR/lora
 * python bench/support/quantize_smollm_shape.py DIR q4   # DIR/base/onnx/model_q4.onnx (MatMulNBits, block 32)
 * (cd bench/peer && npm ci --ignore-scripts)             # transformers.js, only for --peer
 * ```
 *
 * Then `deno run -A bench/native_bench.ts DIR [--dtype=fp32|q4] [--rounds=N] [--prompt=P] [--new=T]
 * [--threads=K] [--peer]`.
 *
 * Per variant (`wasm` / `native`, base alone / with the adapter), each round
 * times two greedy `generate` calls on the same P-token prompt: one new token
 * (prefill tokens/s = P / its time) and T + 1 (decode tokens/s = T / the
 * difference). Variants are interleaved in a shuffled order each round, so
 * load from other processes falls on all alike; printed are medians, and
 * the median of the per-round ratios to `wasm base`. `--peer` then runs
 * transformers.js (under Node, which gives it onnxruntime-node) on the same
 * files, settings and prompt, and after it the native variants once more,
 * and prints its ratio to `native` with the adapter (transformers.js cannot
 * apply one: its figures are the base's); it also checks that its greedy
 * tokens are the native base's. On a shared machine compare ratios, not
 * absolute figures.
 * @module
 */
import { execFile } from "node:child_process";
import { fileURLToPath } from "node:url";
import { type BaseModel, fromPretrained, loadBaseModel, type PeftModel } from "../mod.ts";
import { generate, type TokenizerLike } from "../src/generate/mod.ts";

const dir = Deno.args[0];
if (!dir || dir.startsWith("--")) throw new Error("usage: deno run -A bench/native_bench.ts DIR [--dtype=q4] [--peer]");
const flag = (name: string, fallback: string) =>
  Deno.args.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3) ?? fallback;
const dtype = flag("dtype", "fp32") as "fp32" | "q4";
const ROUNDS = Number(flag("rounds", "5"));
const PROMPT = Number(flag("prompt", "64"));
const NEW = Number(flag("new", "16"));
const THREADS = Number(flag("threads", String(navigator.hardwareConcurrency)));
const prompt = Array.from({ length: PROMPT }, (_, i) => 100 + ((i * 37) % 1000));

type Lm = BaseModel | PeftModel;
const variants: Record<string, Lm> = {};
for (const device of ["wasm", "native"] as const) {
  const t = performance.now();
  const base = await loadBaseModel(`${dir}/base`, { device, dtype, numThreads: THREADS });
  const lora = await fromPretrained(base, `${dir}/lora`, { adapterName: "lora", onWarning: () => {} });
  console.log(
    `${device} ${dtype}: base and dynamic adapter loaded in ${((performance.now() - t) / 1000).toFixed(1)} s`,
  );
  variants[`${device} base`] = base;
  variants[`${device} lora`] = lora;
}

const options = { temperature: 0, eosTokenId: [] as number[] };
// The bench model has no tokenizer: the prompt is token ids, and text is not needed.
const ids: TokenizerLike = { encode: () => prompt, decode: () => "" };
const gen = (lm: Lm, maxNewTokens: number) => generate(lm, ids, prompt, { ...options, maxNewTokens });
/** One round of a variant: prefill and decode tokens/s, and the greedy tokens. */
async function round(lm: Lm) {
  let t = performance.now();
  await gen(lm, 1);
  const one = performance.now() - t;
  t = performance.now();
  const out = await gen(lm, NEW + 1);
  const many = performance.now() - t;
  return { prefill: PROMPT / (one / 1000), decode: NEW / ((many - one) / 1000), tokens: out.tokenIds };
}

const prefill: Record<string, number[]> = Object.fromEntries(Object.keys(variants).map((k) => [k, []]));
const decode: Record<string, number[]> = Object.fromEntries(Object.keys(variants).map((k) => [k, []]));
const tokens: Record<string, number[]> = {};
for (const lm of Object.values(variants)) await gen(lm, 2); // warm-up
let seed = 7;
for (let r = 0; r < ROUNDS; r++) {
  const order = Object.keys(variants).map((k) => [k, seed = (seed * 48271) % 2147483647] as const);
  for (const [name] of order.sort((a, b) => a[1] - b[1])) {
    const m = await round(variants[name]);
    prefill[name].push(m.prefill);
    decode[name].push(m.decode);
    tokens[name] = m.tokens;
  }
}
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor((xs.length - 1) / 2)];
const same = (a: number[], b: number[]) => a.length === b.length && a.every((v, i) => v === b[i]);
console.log(`${dtype}, ${THREADS} threads, prompt ${PROMPT}, ${NEW} new tokens, ${ROUNDS} rounds:`);
for (const [label, table] of [["prefill", prefill], ["decode", decode]] as const) {
  for (const [name, xs] of Object.entries(table)) {
    const ratios = xs.map((v, i) => v / table["wasm base"][i]);
    console.log(
      `  ${label.padEnd(7)} ${name.padEnd(11)} ${median(xs).toFixed(1).padStart(7)} tok/s   x wasm base ` +
        `${median(ratios).toFixed(2)} (per-round median)`,
    );
  }
}
if (!same(tokens["wasm base"], tokens["native base"]) || !same(tokens["wasm lora"], tokens["native lora"])) {
  throw new Error(`native and wasm greedy tokens differ: ${JSON.stringify(tokens)}`);
}
console.log("  greedy tokens: native = wasm, base and adapter");

if (Deno.args.includes("--peer")) {
  const script = fileURLToPath(new URL("./peer/transformers_js.mjs", import.meta.url));
  const args = [script, `${dir}/base`, dtype, String(PROMPT), String(NEW), String(ROUNDS), String(THREADS)];
  const stdout = await new Promise<string>((resolve, reject) =>
    execFile(
      "node",
      args,
      { maxBuffer: 1 << 24 },
      (e, out, err) => e ? reject(new Error(`${e.message}\n${err}`)) : resolve(out),
    )
  );
  const peer = stdout.trim().split("\n").filter((l) => l.startsWith("{")).map((l) => JSON.parse(l));
  // The native variants again after the peer: its process ran at another moment of the machine's load.
  for (let r = 0; r < ROUNDS; r++) {
    for (const name of ["native base", "native lora"]) {
      const m = await round(variants[name]);
      prefill[name].push(m.prefill);
      decode[name].push(m.decode);
    }
  }
  const p = { prefill: median(peer.map((x) => x.prefillTokS)), decode: median(peer.map((x) => x.decodeTokS)) };
  for (const kind of ["prefill", "decode"] as const) {
    const table = kind === "prefill" ? prefill : decode;
    console.log(
      `  ${kind.padEnd(7)} transformers.js ${p[kind].toFixed(1)} tok/s; native lora / transformers.js ` +
        `${(median(table["native lora"]) / p[kind]).toFixed(2)}, native base / transformers.js ` +
        `${(median(table["native base"]) / p[kind]).toFixed(2)}`,
    );
  }
  const peerTokens = peer.at(-1)?.tokens as number[];
  console.log(`  greedy tokens: transformers.js ${same(peerTokens, tokens["native base"]) ? "=" : "!="} native base`);
}
for (const lm of Object.values(variants)) await lm.release();

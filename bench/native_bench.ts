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
 * Then `deno run -A bench/native_bench.ts DIR [--dtype=fp32,q4] [--rounds=N] [--prompt=P] [--new=T]
 * [--threads=K] [--base-only] [--modes=dynamic,merged] [--devices=wasm,native] [--no-spin] [--peer]`.
 *
 * Variants: each device (`wasm`, `native`) and dtype, the base alone and
 * with the adapter in each of `--modes` (default `dynamic`: `lora`; `merged`:
 * `merged`, the adapter merged into the base's weights, the base's graph)
 * (`--base-only`: the base alone; onnxruntime-web's 4 GB
 * heap does not hold fp32 and q4 with their adapter sessions at once). Each
 * round times two greedy `generate` calls of every variant on the same
 * P-token prompt: one new token (prefill tokens/s = P / its time) and T + 1
 * (decode tokens/s = T / the difference), the variants in a shuffled order,
 * so load from other processes falls on all alike. Printed: medians, and the
 * medians of the per-round ratios to the first device's and dtype's base.
 * `--peer` adds transformers.js (under Node, which gives it onnxruntime-node)
 * per dtype as one more variant of each round, on the same files, threads
 * and prompt, in a process of its own per round (its load is not timed),
 * and ratios to it (transformers.js cannot apply a PEFT adapter: its figures
 * are the base's). Printed last: whether the greedy tokens of native, wasm
 * and transformers.js agree. On a shared machine compare ratios, not
 * absolute figures.
 */
import { execFile } from "node:child_process";
import { fileURLToPath } from "node:url";
import { type BaseModel, fromPretrained, loadBaseModel, type PeftModel } from "../mod.ts";
import { generate, type TokenizerLike } from "../src/generate/mod.ts";

const dir = Deno.args[0];
if (!dir || dir.startsWith("--")) {
  // Also what `deno bench bench/` sees: it needs the model folder, so it only says how to run it.
  console.log("usage: deno run -A bench/native_bench.ts DIR [--dtype=fp32,q4] [--devices=wasm,native] [--peer]");
} else {
  await main(dir);
}

async function main(dir: string): Promise<void> {
  const flag = (name: string, fallback: string) =>
    Deno.args.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3) ?? fallback;
  const dtypes = flag("dtype", "fp32").split(",") as ("fp32" | "q4")[];
  const baseOnly = Deno.args.includes("--base-only");
  const modes = flag("modes", "dynamic").split(",") as ("dynamic" | "merged")[];
  const devices = flag("devices", "wasm,native").split(",") as ("wasm" | "native")[];
  // onnxruntime's thread pools spin after each run; in one process the other backend's spinning threads take the
  // cores from the running one, which skews the comparison (--no-spin turns spinning off on both).
  const sessionOptions = Deno.args.includes("--no-spin")
    ? { extra: { session: { intra_op: { allow_spinning: "0" } } } }
    : undefined;
  const ROUNDS = Number(flag("rounds", "5"));
  const PROMPT = Number(flag("prompt", "64"));
  const NEW = Number(flag("new", "16"));
  const THREADS = Number(flag("threads", String(navigator.hardwareConcurrency)));
  const prompt = Array.from({ length: PROMPT }, (_, i) => 100 + ((i * 37) % 1000));

  type Lm = BaseModel | PeftModel;
  const variants: Record<string, Lm> = {};
  for (const dtype of dtypes) {
    for (const device of devices) {
      const t = performance.now();
      const load = () => loadBaseModel(`${dir}/base`, { device, dtype, numThreads: THREADS, sessionOptions });
      // The base variant is a base of its own: a base that has a dynamic adapter runs the branched graph (rank 0).
      variants[`${device} ${dtype} base`] = await load();
      const base = baseOnly ? undefined : await load();
      for (const mode of base ? modes : []) {
        const name = `${device} ${dtype} ${mode === "dynamic" ? "lora" : mode}`;
        variants[name] = await fromPretrained(base!, `${dir}/lora`, { adapterName: "lora", mode, onWarning: () => {} });
      }
      console.log(`${device} ${dtype}: loaded in ${((performance.now() - t) / 1000).toFixed(1)} s`);
    }
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

  const withPeer = Deno.args.includes("--peer");
  const peerScript = fileURLToPath(new URL("./peer/transformers_js.mjs", import.meta.url));
  /** One round of transformers.js in a process of its own (it loads the model each time, untimed). */
  async function peerRound(dtype: string): Promise<{ prefill: number; decode: number; tokens: number[] }> {
    const args = [peerScript, `${dir}/base`, dtype, String(PROMPT), String(NEW), "1", String(THREADS)];
    const stdout = await new Promise<string>((resolve, reject) =>
      execFile(
        "node",
        args,
        { maxBuffer: 1 << 24 },
        (e, out, err) => e ? reject(new Error(`${e.message}\n${err}`)) : resolve(out),
      )
    );
    const line = JSON.parse(stdout.trim().split("\n").filter((l) => l.startsWith("{")).at(-1)!);
    return { prefill: line.prefillTokS, decode: line.decodeTokS, tokens: line.tokens };
  }

  const PEER = "transformers.js";
  const names = [...Object.keys(variants), ...(withPeer ? dtypes.map((d) => `${PEER} ${d}`) : [])];
  const prefill: Record<string, number[]> = Object.fromEntries(names.map((k) => [k, []]));
  const decode: Record<string, number[]> = Object.fromEntries(names.map((k) => [k, []]));
  const tokens: Record<string, number[]> = {};
  for (const lm of Object.values(variants)) await gen(lm, 2); // warm-up
  let seed = 7;
  for (let r = 0; r < ROUNDS; r++) {
    // Every variant, the peer included, once per round in a shuffled order: load from other processes falls on all
    // alike, and per-round ratios compare measurements of the same moment.
    const order = names.map((k) => [k, seed = (seed * 48271) % 2147483647] as const);
    for (const [name] of order.sort((a, b) => a[1] - b[1])) {
      const m = name.startsWith(PEER) ? await peerRound(name.split(" ")[1]) : await round(variants[name]);
      prefill[name].push(m.prefill);
      decode[name].push(m.decode);
      tokens[name] = m.tokens;
    }
  }
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor((xs.length - 1) / 2)];
  const same = (a: number[], b: number[]) => a.length === b.length && a.every((v, i) => v === b[i]);
  console.log(`${THREADS} threads, prompt ${PROMPT}, ${NEW} new tokens, ${ROUNDS} rounds:`);
  const first = `${devices[0]} ${dtypes[0]} base`;
  for (const [label, table] of [["prefill", prefill], ["decode", decode]] as const) {
    for (const [name, xs] of Object.entries(table)) {
      const ratio = (to: string) => median(xs.map((v, i) => v / table[to][i])).toFixed(2);
      const peer = `${PEER} ${name.split(" ")[1]}`;
      console.log(
        `  ${label.padEnd(7)} ${name.padEnd(20)} ${median(xs).toFixed(1).padStart(7)} tok/s   x ${first} ` +
          `${ratio(first)}` + (withPeer ? `   x ${peer} ${ratio(peer)}` : "") + " (per-round medians)",
      );
    }
  }
  for (const dtype of dtypes) {
    const kinds = ["base", ...baseOnly ? [] : modes.map((m) => m === "dynamic" ? "lora" : m)];
    for (const kind of devices.length === 2 ? kinds : []) {
      const [w, n] = [tokens[`wasm ${dtype} ${kind}`], tokens[`native ${dtype} ${kind}`]];
      // Equal for fp32 and q4; q8's dynamic activation quantization may round differently and flip a near tie.
      const at = w.findIndex((v, i) => v !== n[i]);
      console.log(`  ${dtype} ${kind} greedy tokens: native ${same(w, n) ? "=" : `!= (from token ${at})`} wasm`);
    }
    if (withPeer) {
      const eq = same(tokens[`${PEER} ${dtype}`], tokens[`native ${dtype} base`]);
      console.log(`  ${dtype} greedy tokens: ${PEER} ${eq ? "=" : "!="} native base`);
    }
  }
  for (const lm of Object.values(variants)) await lm.release();
}

/**
 * Generation throughput on the bundled demo, base and adapter in one run:
 * `deno bench -A bench/generate_bench.ts`.
 *
 * - `prefill`: one iteration runs a 64-token prompt through the model (and
 *   picks one token), so prefill tokens/s = 64 x iter/s.
 * - `decode`: one iteration is one decode step of a greedy stream (one model
 *   run with the KV cache, token choice and detokenizing), so decode
 *   tokens/s = iter/s. The past length cycles through 5..123.
 *
 * Variants: the base alone, the adapter merged (`mode: "merged"`), and the
 * adapter unmerged in dynamic mode (the default).
 * @module
 */
import { fromPretrained, loadBaseModel } from "../mod.ts";
import { type CausalLm, generate, stream } from "../src/generate/mod.ts";
import { loadTokenizer } from "../src/tokenizer/mod.ts";

const demo = (path: string) => decodeURIComponent(new URL(`../examples/demo/${path}`, import.meta.url).pathname);
const base = await loadBaseModel(demo("byte-llama"));
const adapterPath = demo("byte-llama-python-lora");
const tokenizer = await loadTokenizer(base.source);

const variants: [string, CausalLm][] = [
  ["base", base],
  ["adapter merged", await fromPretrained(base, adapterPath, { mode: "merged" })],
  ["adapter dynamic", await fromPretrained(base, adapterPath, { mode: "dynamic" })],
];

const PREFILL_PROMPT = "It is a truth universally acknowledged, that a single man in possession".slice(0, 64);
if (tokenizer.encode(PREFILL_PROMPT).length !== 64) throw new Error("the prefill prompt must be 64 tokens");
const DECODE_TOKENS = 120;

for (const [name, lm] of variants) {
  Deno.bench({ name: `${name}: prefill 64 tokens`, group: "prefill", baseline: name === "base" }, async () => {
    await generate(lm, tokenizer, PREFILL_PROMPT, { maxNewTokens: 1 });
  });

  // One greedy stream of ASCII text (one piece per token), restarted untimed when it nears its end.
  let pieces: AsyncGenerator<string, unknown> | undefined;
  let left = 0;
  Deno.bench({ name: `${name}: decode 1 token`, group: "decode", baseline: name === "base" }, async (b) => {
    if (pieces === undefined || left === 0) {
      await pieces?.return(undefined);
      pieces = stream(lm, tokenizer, "def ", { maxNewTokens: DECODE_TOKENS });
      await pieces.next(); // prefill and the first token
      left = DECODE_TOKENS - 1;
    }
    b.start();
    await pieces.next();
    b.end();
    left--;
  });
}

import { test } from "node:test";
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import { fromPretrained, GenerationError, loadBaseModel } from "../mod.ts";

const demo = (p: string) => fileURLToPath(new URL(`../examples/demo/${p}`, import.meta.url));

test("model.generate and model.stream reproduce the demo's reference generations (base and adapter)", async () => {
  const reference = JSON.parse(await readFile(demo("reference_generations.json"), "utf8"));
  const base = await loadBaseModel(demo("byte-llama"));
  const model = await fromPretrained(base, demo("byte-llama-python-lora"));
  for (const prompt of ["def ", "The "]) {
    for (const [variant, lm] of [["base", base], ["adapter", model]] as const) {
      const ref = reference.generations.find((g: { prompt: string; variant: string }) =>
        g.prompt === prompt && g.variant === variant
      );
      const result = await lm.generate(prompt, { maxNewTokens: 120, temperature: 0 });
      assert.deepEqual(result.tokenIds, ref.generated_ids, `${variant} ${JSON.stringify(prompt)}`);
      let streamed = "";
      for await (const piece of lm.stream(prompt, { maxNewTokens: 120, temperature: 0 })) streamed += piece;
      assert.equal(streamed, result.text);
    }
  }
  await model.release();
  await base.release();
});

test("a base without tokenizer.json cannot generate from text, with a clear error", async () => {
  const base = await loadBaseModel(fileURLToPath(new URL("./fixtures/llama-tiny", import.meta.url)));
  assert.throws(() => base.generate("hi"), GenerationError);
  await base.release();
});

/**
 * Prompt learning with task_type SEQ_CLS (PEFT's PeftModelForSequenceClassification) on the tiny BERT
 * classifier of tests/fixtures/real, against adapters and logits made by the real PEFT
 * (tests/fixtures/make/prompt_learning.py seq_cls): the virtual tokens go first (token type 0), the pooler
 * reads the first of them, and the saved classifier (modules_to_save) replaces the base's. Logits at 1e-4 on
 * both exporters in both modes; switching prompt adapters creates no session; prefix tuning on an export
 * without a KV cache is refused. On a decoder classifier export (it pools the last non-pad token of input_ids,
 * PEFT the last position) PEFT's logits for a left-padded batch, and a row ending in the pad id refused.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { parseSafetensors, serializeSafetensors } from "../src/safetensors/mod.ts";
import { memorySource } from "../src/storage/memory.ts";
import { fromPretrained, loadBaseModel, Tensor, UnsupportedError } from "../mod.ts";
import { BASE_ADAPTER } from "../src/model/peft_model.ts";
import { comparedDiff, type RealBase, realExpected, realPath } from "./support/real_fixtures.ts";
import { sessionsCreated } from "./support/sessions.ts";

const INPUTS = ["input_ids", "attention_mask", "token_type_ids"];
const classifier = { compare: "all" } as RealBase;
const PROMPT = "../prompt";
const CASES = ["bert-prompt-tuning-seq-cls", "bert-p-tuning-seq-cls"];

for (const exporter of ["torchscript", "dynamo"]) {
  for (const mode of ["dynamic", "merged"] as const) {
    test(`bert-${exporter} ${mode}: SEQ_CLS prompt and P-tuning give PEFT's logits, switching without sessions`, async () => {
      await using base = await loadBaseModel(realPath(`bases/bert-${exporter}`));
      const [first, second] = CASES;
      await using model = await fromPretrained(base, realPath(`${PROMPT}/${first}`), {
        adapterName: first,
        mode,
        onWarning: (m) => assert.fail(m),
      });
      await model.loadAdapter(realPath(`${PROMPT}/${second}`), second, { onWarning: (m) => assert.fail(m) });
      const expected = {
        [first]: await realExpected(`${PROMPT}/${first}`, INPUTS),
        [second]: await realExpected(`${PROMPT}/${second}`, INPUTS),
        [BASE_ADAPTER]: await realExpected(`bases/bert-${exporter}`, INPUTS),
      };
      // The base's own session is made on its first run (one copy of the weights): made before counting.
      await model.run(expected[BASE_ADAPTER].feeds, { adapter: null });
      const created = await sessionsCreated(async () => {
        for (const name of [first, second, BASE_ADAPTER, first]) {
          const e = expected[name];
          const out = await model.run(e.feeds, { adapter: name === BASE_ADAPTER ? null : name });
          assert.deepEqual(out.logits.dims, e.dims);
          const diff = comparedDiff(classifier, e, out.logits.data as Float32Array);
          assert.ok(diff <= 1e-4, `${name}: max abs diff ${diff}`);
        }
      });
      assert.equal(created, 0);
    });
  }
}

test("SEQ_CLS prompt tuning without its saved classifier is another model: the classifier is applied", async () => {
  await using base = await loadBaseModel(realPath("bases/bert-torchscript"));
  const name = CASES[0];
  const e = await realExpected(`${PROMPT}/${name}`, INPUTS);
  // The same prompt with the base's classifier (PEFT's config without modules_to_save still adds "classifier",
  // so the file's tensors are what is dropped here: a copy of the adapter with only the prompt).
  const dir = realPath(`${PROMPT}/${name}`);
  const saved = parseSafetensors(await readFile(`${dir}/adapter_model.safetensors`));
  const promptOnly = serializeSafetensors(
    new Map([["prompt_embeddings", {
      dtype: "F32" as const,
      shape: saved.info("prompt_embeddings").shape,
      data: saved.toFloat32("prompt_embeddings"),
    }]]),
  );
  await using model = await fromPretrained(
    base,
    memorySource("prompt-only", {
      "adapter_config.json": await readFile(`${dir}/adapter_config.json`),
      "adapter_model.safetensors": promptOnly,
    }),
    { onWarning: () => {} },
  );
  const diff = comparedDiff(classifier, e, (await model.run(e.feeds)).logits.data as Float32Array);
  assert.ok(diff > 1e-2, `without the saved classifier the logits are within ${diff} of PEFT's`);
});

test("SEQ_CLS prefix tuning on a BERT export without past_key_values is refused with a typed error", async () => {
  await using base = await loadBaseModel(realPath("bases/bert-torchscript"));
  await assert.rejects(
    fromPretrained(base, realPath(`${PROMPT}/bert-prefix-tuning-seq-cls`), { onWarning: () => {} }),
    (err: unknown) => err instanceof UnsupportedError && /past_key_values/.test(err.message),
  );
});

test("SEQ_CLS prompt tuning on a decoder classifier export gives PEFT's logits; a row ending in the pad id is refused", async () => {
  // The export pools the last token that is not pad_token_id, PEFT (inputs_embeds) the last position.
  await using base = await loadBaseModel(realPath(`${PROMPT}/llama-cls/base`));
  const adapter = `${PROMPT}/llama-cls/prompt-tuning`;
  await using model = await fromPretrained(base, realPath(adapter), { onWarning: (m) => assert.fail(m) });
  const e = await realExpected(adapter, ["input_ids", "attention_mask"]);
  const out = await model.run(e.feeds);
  assert.deepEqual(out.logits.dims, e.dims);
  const diff = comparedDiff(classifier, e, out.logits.data as Float32Array);
  assert.ok(diff <= 1e-4, `max abs diff ${diff}`);
  // Row 1 right-padded: its last id is the pad id (0), where PEFT and the export pool different tokens.
  const ids = e.feeds.input_ids.data as BigInt64Array;
  const padded = BigInt64Array.from([...ids.slice(0, 6), 28n, 16n, 52n, 21n, 0n, 0n]);
  const mask = BigInt64Array.from([1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0].map(BigInt));
  await assert.rejects(
    model.run({
      input_ids: new Tensor("int64", padded, [2, 6]),
      attention_mask: new Tensor("int64", mask, [2, 6]),
    }),
    (err: unknown) => err instanceof UnsupportedError && /row 1 ends in the pad id 0/.test(err.message),
  );
});

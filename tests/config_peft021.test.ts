/**
 * Config fields of PEFT 0.21: every adapter_config.json that real PEFT 0.21
 * saved (tests/fixtures/real) parses without an unknown-field warning, the
 * LoRA variants its new sub-configs select are refused, and a config without
 * `peft_type` is refused as PEFT's from_pretrained refuses it.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { readdir, readFile } from "node:fs/promises";
import { AdapterConfigError, UnsupportedError } from "../mod.ts";
import { parseLoraConfig } from "../src/config/mod.ts";
import { realManifest, realPath } from "./support/real_fixtures.ts";

const manifest = await realManifest();

test("every config PEFT 0.21 saved parses without warnings", async () => {
  const folders = [...manifest.adapters.map((a) => a.path), ...manifest.verdicts.map((v) => v.path)];
  let parsed = 0;
  for (const folder of folders) {
    const names = await readdir(realPath(folder));
    if (!names.includes("adapter_config.json")) continue;
    const text = await readFile(realPath(`${folder}/adapter_config.json`), "utf8");
    const raw = JSON.parse(text);
    // The verdicts about unknown fields / peft_type are checked on their own below and in real_peft.test.ts.
    if (folder.endsWith("unknown-field") || raw.peft_type !== "LORA") continue;
    const warnings: string[] = [];
    try {
      parseLoraConfig(text, { file: folder, onWarning: (m) => warnings.push(m) });
    } catch (err) {
      // Verdicts PEFT raises on are real_peft.test.ts's subject; the unknown-field warning comes before them.
      assert.ok(err instanceof UnsupportedError || err instanceof AdapterConfigError, `${folder}: ${err}`);
    }
    assert.deepEqual(warnings.filter((w) => w.includes("unknown LoraConfig fields")), [], folder);
    for (const key of ["kasa_config", "monteclora_config", "velora_config"]) assert.ok(key in raw, `${folder}: ${key}`);
    parsed++;
  }
  assert.ok(parsed >= 30, `only ${parsed} configs`);
});

for (const key of ["kasa_config", "monteclora_config", "velora_config"]) {
  test(`${key} set selects a LoRA variant peft-edge does not run: refused`, () => {
    assert.throws(
      () => parseLoraConfig({ peft_type: "LORA", target_modules: ["q_proj"], [key]: {} }, { onWarning: () => {} }),
      (e) => e instanceof UnsupportedError && e.key === key,
    );
  });
}

test("no peft_type: refused for a file (PEFT raises KeyError), accepted for a config given in code", async () => {
  const verdict = manifest.verdicts.find((v) => v.name === "no-peft-type")!;
  assert.equal(verdict.exception, "KeyError");
  const text = await readFile(realPath(`${verdict.path}/adapter_config.json`), "utf8");
  assert.throws(
    () => parseLoraConfig(text, { file: "adapter_config.json", requirePeftType: true }),
    (e) => e instanceof AdapterConfigError && e.key === "peft_type" && /peft_type/.test(e.message),
  );
  assert.equal(parseLoraConfig(text, { onWarning: () => {} }).peftType, "LORA");
});

test("trainable_token_indices (PEFT 0.21 TrainableTokens) parses as a list or per module", () => {
  const list = parseLoraConfig({ peft_type: "LORA", target_modules: ["q_proj"], trainable_token_indices: [1, 2] });
  assert.deepEqual(list.trainableTokenIndices, [1, 2]);
  const dict = parseLoraConfig({ target_modules: ["q_proj"], trainable_token_indices: { embed_tokens: [3] } });
  assert.deepEqual(dict.trainableTokenIndices, { embed_tokens: [3] });
  assert.throws(
    () => parseLoraConfig({ target_modules: ["q_proj"], trainable_token_indices: ["a"] }),
    (e) => e instanceof AdapterConfigError && e.key === "trainable_token_indices",
  );
});

/**
 * Conformance with the real Hugging Face stack: bases made by transformers and
 * exported by both torch.onnx exporters (plus onnxruntime's fp16/q8/q4
 * converters), adapters saved by PEFT, and PEFT's own verdicts on bad
 * adapters (tests/fixtures/real; see its README). Cases listed in
 * EXPECTED_FAILURES must fail, every other case must pass.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import {
  baseNamed,
  caseId,
  checkAdapter,
  checkBase,
  checkVerdict,
  distinguishable,
  EXPECTED_FAILURES,
  realManifest,
  runCase,
} from "./support/real_fixtures.ts";

const manifest = await realManifest();
const MODES = ["dynamic", "merged"] as const;
const ids = new Set<string>();

for (const base of manifest.bases) {
  for (const variant of base.variants) {
    const id = caseId.base(base.name, variant.file);
    ids.add(id);
    test(id, () => runCase(id, () => checkBase(base, variant)));
  }
}

for (const adapter of manifest.adapters) {
  for (const name of adapter.bases) {
    const base = baseNamed(manifest, name);
    for (const variant of base.variants) {
      for (const mode of MODES.filter((m) => distinguishable(adapter, base, variant, m))) {
        const id = caseId.adapter(adapter.name, base.name, variant.file, mode);
        ids.add(id);
        test(id, () => runCase(id, () => checkAdapter(adapter, base, variant, mode)));
      }
    }
  }
}

for (const verdict of manifest.verdicts) {
  for (const name of verdict.bases) {
    for (const mode of MODES) {
      const id = caseId.verdict(verdict.name, name, mode);
      ids.add(id);
      test(id, () => runCase(id, () => checkVerdict(verdict, baseNamed(manifest, name), mode)));
    }
  }
}

test("every expected failure names a case that exists", () => {
  assert.deepEqual([...EXPECTED_FAILURES.keys()].filter((id) => !ids.has(id)), []);
});

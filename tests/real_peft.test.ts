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
  checkQuantMerged,
  checkQuantRefBase,
  checkVerdict,
  distinguishable,
  EXPECTED_FAILURES,
  quantMergeRef,
  realManifest,
  runCase,
} from "./support/real_fixtures.ts";

const manifest = await realManifest();
const quantRef = await quantMergeRef();
const MODES = ["dynamic", "merged"] as const;
const QUANTIZED = new Set(["q4", "q8"]);
const ids = new Set<string>();

for (const base of manifest.bases) {
  for (const variant of base.variants) {
    const id = caseId.base(base.name, variant.file);
    ids.add(id);
    test(id, () => runCase(id, () => checkBase(base, variant)));
  }
}

for (const { base: name, file } of quantRef.round_trip) {
  const id = caseId.quantRef(name, file);
  ids.add(id);
  test(id, () => runCase(id, () => checkQuantRefBase(quantRef, baseNamed(manifest, name), file)));
}

for (const adapter of manifest.adapters) {
  for (const name of adapter.bases) {
    const base = baseNamed(manifest, name);
    for (const variant of base.variants) {
      for (const mode of MODES) {
        const id = caseId.adapter(adapter.name, base.name, variant.file, mode);
        // Merged into a quantized file: PEFT's merge on that quantized base is the reference (where PEFT can
        // merge: else torch's logits and the manifest's rule); dynamic mode does not re-quantize and keeps those.
        const quantized = mode === "merged" && QUANTIZED.has(variant.dtype);
        const ref = quantRef.cases.find((c) =>
          c.adapter === adapter.name && c.base === base.name && c.file === variant.file
        );
        if (quantized && ref === undefined) {
          ids.add(id);
          test(id, () => {
            throw new Error(`no quantized-merge reference for it: run tests/fixtures/make/quant_merge_ref.py`);
          });
        } else if (quantized && ref?.key !== undefined) {
          if (!(ref.delta_from_base! > 2 * quantRef.atol)) continue;
          ids.add(id);
          test(id, () => runCase(id, () => checkQuantMerged(quantRef, ref, adapter, base)));
        } else if (distinguishable(adapter, base, variant, mode)) {
          ids.add(id);
          test(id, () => runCase(id, () => checkAdapter(adapter, base, variant, mode)));
        }
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

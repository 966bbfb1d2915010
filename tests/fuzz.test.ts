/**
 * The fuzzer in the suite (Deno and Bun both run it): a short, seeded
 * budget over every target (safetensors, adapter configs, ONNX bases, HTTP
 * requests), at least 2,000 cases, 0 untyped errors, 0 hangs, and the
 * models already loaded giving the same outputs afterwards. Longer runs and
 * reproductions: `tests/fuzz/main.ts`, or FUZZ_SEED / FUZZ_MS here
 * (FUZZ_SEED=random for a fresh seed; FUZZ_TRACE=1 prints every case).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import process from "node:process";
import { reproduce, runFuzz } from "./fuzz/run.ts";
import { fuzzSetup } from "./fuzz/setup.ts";

const seedText = process.env.FUZZ_SEED ?? "20261201";
const seed = seedText === "random" ? Math.floor(Math.random() * 2 ** 31) : Number(seedText);
const budgetMs = Number(process.env.FUZZ_MS ?? 6000);

test(
  `fuzz: seed ${seedText}, ${budgetMs} ms, typed outcomes only and no state change`,
  { timeout: 300_000 },
  async () => {
    const setup = await fuzzSetup();
    try {
      const report = await runFuzz(setup.targets, {
        seed,
        budgetMs,
        minCases: 2000,
        trace: process.env.FUZZ_TRACE === "1",
        checkState: setup.checkState,
      });
      const summary = `seed ${seed}: ${report.total} cases ${JSON.stringify(report.cases)}`;
      console.log(summary);
      const failures = report.failures.map((f) => `${reproduce(f)}\n  ${f.problem}`).join("\n");
      assert.equal(report.failures.length, 0, `${summary}\n${failures}`);
      assert.ok(report.total >= 2000, summary);
      for (const [target, counts] of Object.entries(report.cases)) {
        assert.ok(counts.accepted + counts.refused > 0, `${target} ran no case`);
      }
    } finally {
      await setup.close();
    }
  },
);

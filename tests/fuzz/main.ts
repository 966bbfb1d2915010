/**
 * The fuzzer by hand, for longer runs and to reproduce a failure:
 *
 * ```sh
 * deno run -A tests/fuzz/main.ts --seed 7 --ms 600000          # ten minutes
 * deno run -A tests/fuzz/main.ts --seed 7 --target http --case 1234   # one case
 * bun tests/fuzz/main.ts --seed random --ms 60000
 * ```
 * Exits 1 when a case failed or a loaded model changed.
 * @module
 */
import process from "node:process";
import { parseArgs } from "node:util";
import { reproduce, runFuzz } from "./run.ts";
import { fuzzSetup } from "./setup.ts";

const { values } = parseArgs({
  args: process.argv.slice(2),
  options: {
    seed: { type: "string", default: "1" },
    ms: { type: "string", default: "60000" },
    target: { type: "string" },
    case: { type: "string" },
    trace: { type: "boolean", default: false },
  },
});
const seed = values.seed === "random" ? Math.floor(Math.random() * 2 ** 31) : Number(values.seed);
const setup = await fuzzSetup();
const report = await runFuzz(setup.targets, {
  seed,
  budgetMs: Number(values.ms),
  only: values.target !== undefined && values.case !== undefined
    ? { target: values.target, index: Number(values.case) }
    : undefined,
  trace: values.trace,
  checkState: setup.checkState,
});
console.log(JSON.stringify({ seed: report.seed, total: report.total, cases: report.cases }, null, 2));
for (const failure of report.failures) console.log(`FAIL ${reproduce(failure)}\n  ${failure.problem}`);
await setup.close();
process.exit(report.failures.length > 0 ? 1 : 0);

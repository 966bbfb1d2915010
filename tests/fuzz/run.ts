/**
 * The fuzz runner: each target gets its share of a time budget and runs
 * case after case, each from its own seed (`caseSeed(seed, target, index)`),
 * so a failure reproduces from the seed and case index alone. A case
 * fails when it throws anything but a typed refusal, or takes longer than
 * its target's bound. Between targets the caller checks that the models
 * already loaded still give the same outputs.
 * @module
 */
import { caseSeed, Rng } from "./rng.ts";
import type { FuzzTarget } from "./targets.ts";

/** A case that went wrong, with what reproduces it. */
export interface FuzzFailureRecord {
  target: string;
  seed: number;
  index: number;
  problem: string;
}

/** What a run did. */
export interface FuzzReport {
  seed: number;
  cases: Record<string, { accepted: number; refused: number; slowestMs: number }>;
  total: number;
  failures: FuzzFailureRecord[];
}

/** Options of {@linkcode runFuzz}. */
export interface FuzzOptions {
  seed: number;
  /** Time budget over all targets. */
  budgetMs: number;
  /** Cases to reach over all targets, even past the budget (up to three times it). */
  minCases?: number;
  /** Run only this case index (with `only`'s target): reproduces one failure. */
  only?: { target: string; index: number };
  /** Prints each case before running it (to find a case that hangs the process). */
  trace?: boolean;
  /** Called after each target: throws if a loaded model's outputs changed. */
  checkState?: (after: string) => Promise<void>;
}

function describe(error: unknown): string {
  if (error instanceof Error) {
    return `${error.name}: ${error.message}`.slice(0, 500) + `\n${error.stack ?? ""}`.slice(0, 800);
  }
  return String(error).slice(0, 500);
}

/** Runs one case within its target's bound. */
async function runCase(
  target: FuzzTarget,
  seed: number,
  index: number,
): Promise<{ outcome?: "accepted" | "refused"; problem?: string; ms: number }> {
  const started = performance.now();
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no outcome within ${target.timeoutMs} ms (hang)`)), target.timeoutMs);
  });
  try {
    const outcome = await Promise.race([target.run(new Rng(caseSeed(seed, target.name, index))), late]);
    const ms = performance.now() - started;
    // A synchronous stall blocks the timer too: measure it afterwards.
    if (ms > target.timeoutMs) {
      return { ms, problem: `took ${ms.toFixed(0)} ms, over the ${target.timeoutMs} ms bound` };
    }
    return { outcome, ms };
  } catch (error) {
    return { ms: performance.now() - started, problem: describe(error) };
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Runs the targets for the budget and reports every case's outcome.
 *
 * @example
 * ```ts
 * import { runFuzz } from "./run.ts";
 * import { safetensorsTarget } from "./targets.ts";
 * const report = await runFuzz([await safetensorsTarget()], { seed: 1, budgetMs: 1000 });
 * console.log(report.total, report.failures.length);
 * ```
 */
export async function runFuzz(targets: FuzzTarget[], options: FuzzOptions): Promise<FuzzReport> {
  const report: FuzzReport = { seed: options.seed, cases: {}, total: 0, failures: [] };
  const shares = targets.reduce((sum, t) => sum + t.share, 0);
  for (const target of targets) {
    if (options.only && options.only.target !== target.name) continue;
    const counts = (report.cases[target.name] = { accepted: 0, refused: 0, slowestMs: 0 });
    const budget = options.budgetMs * target.share / shares;
    const minCases = Math.ceil((options.minCases ?? 0) * target.share / shares);
    const started = performance.now();
    const indices = options.only ? [options.only.index] : undefined;
    for (let i = 0;; i++) {
      const index = indices ? indices[i] : i;
      if (index === undefined) break;
      const elapsed = performance.now() - started;
      if (!indices && elapsed > budget && (i >= minCases || elapsed > 3 * budget)) break;
      if (options.trace) console.log(`fuzz ${target.name} seed=${options.seed} case=${index}`);
      const result = await runCase(target, options.seed, index);
      report.total++;
      counts.slowestMs = Math.max(counts.slowestMs, Math.round(result.ms));
      if (result.outcome) counts[result.outcome]++;
      if (result.problem) {
        report.failures.push({ target: target.name, seed: options.seed, index, problem: result.problem });
        if (report.failures.filter((f) => f.target === target.name).length >= 5) break;
      }
    }
    await options.checkState?.(target.name);
  }
  return report;
}

/** How to rerun a failure by hand. */
export function reproduce(failure: FuzzFailureRecord): string {
  return `deno run -A tests/fuzz/main.ts --seed ${failure.seed} --target ${failure.target} --case ${failure.index}`;
}

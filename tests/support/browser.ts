/**
 * Test support for the headless-Chromium tests: where Chromium is and when
 * they skip, running a command in the repo, and esbuild's browser bundle of
 * an entry (the drivers themselves: tests/support/chromium.mjs).
 * @module
 */
import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { join } from "node:path";
import process from "node:process";
import { fileURLToPath } from "node:url";

/** The repository root. */
export const REPO = fileURLToPath(new URL("../..", import.meta.url));

/** Debian's Chromium, or `$CHROMIUM`. */
const CHROMIUM = process.env.CHROMIUM ?? "/usr/bin/chromium";

/** Why a Chromium test skips here (they run once, in the Deno suite), or `false`. */
export const chromiumSkip: string | false = (globalThis as { Bun?: unknown }).Bun !== undefined
  ? "runs in the Deno suite"
  : !existsSync(CHROMIUM)
  ? `no Chromium at ${CHROMIUM}`
  : false;

/** Runs `command` in the repo root; resolves with its stdout, rejects with its stderr. */
export function runInRepo(command: string, args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(command, args, { cwd: REPO, timeout: 180_000, maxBuffer: 1 << 24 }, (error, stdout, stderr) => {
      if (error) reject(new Error(`${command} ${args[0]} failed: ${error.message}\n${stderr}`));
      else resolve(stdout);
    });
  });
}

/** esbuild's minified ESM browser bundle of `entry` (relative to the repo) into `outdir`, as the browser demo builds. */
export async function bundleForBrowser(entry: string, outdir: string): Promise<void> {
  await runInRepo(join(REPO, "node_modules/.bin/esbuild"), [
    entry,
    "--bundle",
    "--splitting",
    "--format=esm",
    "--platform=browser",
    "--minify",
    "--tsconfig=examples/browser/tsconfig.json",
    "--external:node:*",
    `--outdir=${outdir}`,
    "--log-level=warning",
  ]);
}

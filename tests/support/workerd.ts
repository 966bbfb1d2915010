/**
 * Running a worker in local workerd for tests: bundle an entry with esbuild
 * (the browser tsconfig's npm: mappings), start `workerd serve` on a free
 * port in the folder holding `config.capnp`, and stop it.
 * @module
 */
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { freePort } from "./free_port.ts";

const repo = fileURLToPath(new URL("../..", import.meta.url));

/** Bundles `entry` (relative to the repo) into `dir/worker.js`; `externals` are left to workerd's modules. */
export function bundleWorker(entry: string, dir: string, externals: readonly string[] = []): Promise<void> {
  const args = [
    entry,
    "--bundle",
    "--format=esm",
    "--platform=browser",
    "--tsconfig=examples/browser/tsconfig.json",
    "--external:node:*",
    ...externals.map((e) => `--external:${e}`),
    `--outfile=${join(dir, "worker.js")}`,
    "--log-level=warning",
  ];
  return new Promise((resolve, reject) =>
    execFile(
      join(repo, "node_modules/.bin/esbuild"),
      args,
      { cwd: repo },
      (error, _out, stderr) => error ? reject(new Error(`${error.message}\n${stderr}`)) : resolve(),
    )
  );
}

/** A running workerd: its port, what it printed so far, and a stop that waits for it to exit. */
export interface Workerd {
  port: number;
  child: ChildProcess;
  log(): string;
  stop(): Promise<void>;
}

/** Starts `workerd serve config.capnp` in `dir` on a free loopback port. */
export async function startWorkerd(dir: string): Promise<Workerd> {
  const port = await freePort();
  const child = spawn(
    join(repo, "node_modules/.bin/workerd"),
    ["serve", "config.capnp", "--socket-addr", `http=127.0.0.1:${port}`],
    { cwd: dir, stdio: ["ignore", "pipe", "pipe"] },
  );
  let log = "";
  child.stdout!.on("data", (d) => log += d);
  child.stderr!.on("data", (d) => log += d);
  return {
    port,
    child,
    log: () => log,
    async stop() {
      child.kill("SIGTERM");
      if (child.exitCode === null) await new Promise((resolve) => child.once("exit", resolve));
    },
  };
}

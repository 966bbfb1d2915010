// Which Hub cache an edge runtime gets by default: in Cloudflare's workerd (npm `workerd`, run locally),
// `globalThis.caches` exists but every lookup throws "No Cache was configured", so the default is the memory cache
// and a Hub file loads; asking for the Cache API there explicitly is the error. Runs once, in the Deno suite.
import { test } from "node:test";
import assert from "node:assert/strict";
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { mkdtemp, rm, stat, writeFile } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { startTestHub } from "./support/hub_server.ts";
import { fixture } from "./support/fixtures.ts";

const repo = fileURLToPath(new URL("..", import.meta.url));
const isBun = (globalThis as { Bun?: unknown }).Bun !== undefined;

// The test Hub is on 127.0.0.1, which workerd's default outbound network refuses: allow it.
const CONFIG = `using Workerd = import "/workerd/workerd.capnp";
const config :Workerd.Config = (
  services = [(name = "main", worker = .hub), (name = "net", network = (allow = ["public", "private", "local"]))],
  sockets = [(name = "http", address = "127.0.0.1:8787", http = (), service = "main")],
);
const hub :Workerd.Worker = (
  modules = [(name = "worker", esModule = embed "worker.js")],
  compatibilityDate = "2025-09-01",
  compatibilityFlags = ["nodejs_compat"],
  globalOutbound = "net",
);
`;

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

test("in workerd the default Hub cache is memory (its caches has no cache configured) and Hub files load", {
  skip: isBun ? "runs in the Deno suite" : false,
  timeout: 120_000,
}, async () => {
  const dir = await mkdtemp(join(tmpdir(), "peft-edge-hub-workerd-"));
  const hub = await startTestHub({ repos: { "test/llama-tiny-lora-qv": { folder: fixture("llama-tiny-lora-qv") } } });
  let child: ChildProcess | undefined;
  try {
    await writeFile(join(dir, "config.capnp"), CONFIG);
    await new Promise<void>((resolve, reject) =>
      execFile(
        join(repo, "node_modules/.bin/esbuild"),
        [
          "tests/support/hub_worker.ts",
          "--bundle",
          "--format=esm",
          "--platform=browser",
          "--tsconfig=examples/browser/tsconfig.json",
          "--external:node:*",
          `--outfile=${join(dir, "worker.js")}`,
          "--log-level=warning",
        ],
        { cwd: repo },
        (error, _out, stderr) => error ? reject(new Error(`${error.message}\n${stderr}`)) : resolve(),
      )
    );
    const port = await freePort();
    child = spawn(
      join(repo, "node_modules/.bin/workerd"),
      ["serve", "config.capnp", "--socket-addr", `http=127.0.0.1:${port}`],
      { cwd: dir, stdio: ["ignore", "pipe", "pipe"] },
    );
    let log = "";
    child.stdout!.on("data", (d) => log += d);
    child.stderr!.on("data", (d) => log += d);
    const ask = async (query: string) => {
      for (let i = 0;; i++) {
        try {
          const response = await fetch(`http://127.0.0.1:${port}/?hub=${encodeURIComponent(hub.url)}${query}`);
          return await response.json() as { storage?: string; location?: string; size?: number; error?: string };
        } catch (error) {
          if (i > 100 || child!.exitCode !== null) throw new Error(`${error}\n${log}`);
          await new Promise((resolve) => setTimeout(resolve, 100)); // not listening yet
        }
      }
    };
    const size = (await stat(join(fixture("llama-tiny-lora-qv"), "adapter_model.safetensors"))).size;
    assert.deepEqual(await ask(""), { storage: "memory", location: "memory", size });
    const explicit = await ask("&storage=cache-api");
    assert.match(explicit.error ?? "", /No Cache was configured/, JSON.stringify(explicit));
  } finally {
    child?.kill("SIGTERM");
    if (child && child.exitCode === null) await new Promise((resolve) => child!.once("exit", resolve));
    await hub.stop();
    await rm(dir, { recursive: true, force: true });
  }
});

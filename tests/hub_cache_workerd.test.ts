// Which Hub cache an edge runtime gets by default: in Cloudflare's workerd (npm `workerd`, run locally),
// `globalThis.caches` exists but every lookup throws "No Cache was configured", so the default is the memory cache
// and a Hub file loads; asking for the Cache API there explicitly is the error. Runs once, in the Deno suite.
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startTestHub } from "./support/hub_server.ts";
import { fixture } from "./support/fixtures.ts";
import { bundleWorker, startWorkerd, type Workerd } from "./support/workerd.ts";

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

test("in workerd the default Hub cache is memory (its caches has no cache configured) and Hub files load", {
  skip: isBun ? "runs in the Deno suite" : false,
  timeout: 120_000,
}, async () => {
  const dir = await mkdtemp(join(tmpdir(), "peft-edge-hub-workerd-"));
  const hub = await startTestHub({ repos: { "test/llama-tiny-lora-qv": { folder: fixture("llama-tiny-lora-qv") } } });
  let workerd: Workerd | undefined;
  try {
    await writeFile(join(dir, "config.capnp"), CONFIG);
    await bundleWorker("tests/support/hub_worker.ts", dir);
    workerd = await startWorkerd(dir);
    const { port, child: running, log } = workerd;
    const ask = async (query: string) => {
      for (let i = 0;; i++) {
        try {
          const response = await fetch(`http://127.0.0.1:${port}/?hub=${encodeURIComponent(hub.url)}${query}`);
          return await response.json() as { storage?: string; location?: string; size?: number; error?: string };
        } catch (error) {
          if (i > 100 || running.exitCode !== null) throw new Error(`${error}\n${log()}`);
          await new Promise((resolve) => setTimeout(resolve, 100)); // not listening yet
        }
      }
    };
    const size = (await stat(join(fixture("llama-tiny-lora-qv"), "adapter_model.safetensors"))).size;
    assert.deepEqual(await ask(""), { storage: "memory", location: "memory", size });
    const explicit = await ask("&storage=cache-api");
    assert.match(explicit.error ?? "", /No Cache was configured/, JSON.stringify(explicit));
  } finally {
    await workerd?.stop();
    await hub.stop();
    await rm(dir, { recursive: true, force: true });
  }
});

// Every ```ts block of README.md runs as written (from the repository root, importing ./mod.ts): the blocks are
// type-checked together, then each runs in its own Deno process, without the network: Hub repo ids go to the test
// Hub (HF_ENDPOINT; `user/my-lora`, private, with a `v1.0` tag and the adapter under `adapters/qv`), the README's
// example host https://models.example/ to a local server of tests/fixtures (tests/support/readme_network.ts,
// preloaded), the Hub cache to a temp folder. A block preceded by `<!-- snippet: server -->` is a server: it runs
// with PORT=0, must print `listening on <url>`, answer /health, /v1/models and a completion, and exit 0 on SIGTERM.
// A block preceded by `<!-- snippet: skip (reason) -->` is only type-checked. Runs once, in the Deno suite.
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFile, spawn } from "node:child_process";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { startTestHub } from "./support/hub_server.ts";
import { serveFolder } from "./support/static_server.ts";

const repo = fileURLToPath(new URL("..", import.meta.url));
const deno = join(repo, "node_modules/.bin/deno");
const isBun = (globalThis as { Bun?: unknown }).Bun !== undefined;

interface Snippet {
  line: number;
  code: string;
  skip?: string;
  /** Marked `<!-- snippet: server -->`. */
  server?: boolean;
}

/** The ```ts blocks of a Markdown text, with their skip markers. */
export function tsBlocks(markdown: string): Snippet[] {
  const lines = markdown.split("\n");
  const blocks: Snippet[] = [];
  for (let i = 0; i < lines.length; i++) {
    if (lines[i].trim() !== "```ts") continue;
    const end = lines.indexOf("```", i + 1);
    assert.ok(end > i, `README.md:${i + 1}: unclosed block`);
    const before = lines.slice(Math.max(0, i - 2), i).join("\n");
    const skip = /<!-- snippet: skip \(([^)]+)\) -->/.exec(before)?.[1];
    const server = before.includes("<!-- snippet: server -->");
    blocks.push({ line: i + 1, code: lines.slice(i + 1, end).join("\n"), skip, server });
    i = end;
  }
  return blocks;
}

function run(args: string[], env: Record<string, string> = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    const options = { cwd: repo, timeout: 180_000, env: { ...process.env, NO_COLOR: "1", ...env } };
    execFile(deno, args, options, (error, out, err) => {
      if (error) reject(new Error(`deno ${args.join(" ")}: ${error.message}\n${out}\n${err}`));
      else resolve(out);
    });
  });
}

/** Runs a server snippet: waits for its URL, asks it a few things, stops it with SIGTERM; it must exit 0. */
async function runServer(file: string, env: Record<string, string>): Promise<void> {
  const child = spawn(deno, ["run", "-A", "--no-check", file], {
    cwd: repo,
    env: { ...process.env, NO_COLOR: "1", ...env, PORT: "0" },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let log = "";
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
  try {
    const url = await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no "listening on" line within 60 s:\n${log}`)), 60_000);
      const seen = (chunk: Buffer) => {
        log += chunk;
        const found = /listening on (http:\/\/\S+)/.exec(log);
        if (found) resolve(found[1]), clearTimeout(timer);
      };
      child.stdout!.on("data", seen);
      child.stderr!.on("data", (chunk: Buffer) => log += chunk);
      exited.then((code) => reject(new Error(`exited with ${code} before listening:\n${log}`)));
    });
    const health = await fetch(`${url}/health`);
    assert.equal(health.status, 200, log);
    assert.equal((await health.json()).status, "ok");
    const models = await (await fetch(`${url}/v1/models`)).json() as { data: { id: string }[] };
    assert.deepEqual(models.data.map((m) => m.id).sort(), ["byte-llama", "python"]);
    const completion = await fetch(`${url}/v1/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ model: "python", prompt: "def ", max_tokens: 8, temperature: 0 }),
    });
    assert.equal(completion.status, 200, log);
    assert.ok(((await completion.json()) as { choices: { text: string }[] }).choices[0].text.length > 0);
    // Not child.kill: under Deno that ends the child by the signal, without its listener running.
    process.kill(child.pid!, "SIGTERM");
    const code = await Promise.race([exited, new Promise((r) => setTimeout(() => r("still running"), 30_000))]);
    assert.equal(code, 0, `exit after SIGTERM:\n${log}`);
  } finally {
    if (child.exitCode === null) child.kill("SIGKILL");
  }
}

test("every README.md TypeScript snippet type-checks, and runs unless marked", {
  skip: isBun ? "runs in the Deno suite" : false,
  timeout: 300_000,
}, async () => {
  const snippets = tsBlocks(await readFile(join(repo, "README.md"), "utf8"));
  assert.ok(snippets.length >= 5, `found ${snippets.length} snippets`);
  assert.ok(snippets.filter((s) => s.skip).length <= 2, "only few snippets may be skipped");
  const files = snippets.map((s) => join(repo, `.readme_snippet_${s.line}.ts`));
  const fixtures = join(repo, "tests/fixtures");
  const token = "hf_..."; // the README's example token, accepted by the test Hub
  const adapter = await Promise.all(
    ["adapter_config.json", "adapter_model.safetensors"].map((f) => readFile(join(fixtures, "llama-tiny-lora-qv", f))),
  );
  const hub = await startTestHub({
    repos: {
      "user/my-lora": {
        private: true,
        tags: ["v1.0"],
        files: {
          "adapters/qv/adapter_config.json": new Uint8Array(adapter[0]),
          "adapters/qv/adapter_model.safetensors": new Uint8Array(adapter[1]),
        },
      },
    },
    tokens: [token],
  });
  const models = await serveFolder(fixtures);
  const cacheDir = await mkdtemp(join(tmpdir(), "peft-edge-readme-"));
  const env = {
    HF_ENDPOINT: hub.url,
    HF_HUB_CACHE: cacheDir,
    HF_TOKEN: "",
    HF_HUB_OFFLINE: "",
    README_MODELS_EXAMPLE: models.url,
  };
  try {
    for (const [i, s] of snippets.entries()) await writeFile(files[i], `${s.code}\nexport {};\n`);
    await run(["check", ...files]);
    for (const [i, s] of snippets.entries()) {
      if (s.skip) continue;
      const running = s.server
        ? runServer(files[i], env)
        : run(["run", "-A", "--no-check", "--preload", "tests/support/readme_network.ts", files[i]], env);
      await running.catch((error) => {
        throw new Error(`README.md:${s.line}: ${error.message}`);
      });
    }
    // The Hub snippet went to the local servers, with its revision, subfolder and token.
    const adapterFile = hub.requests.find((r) => r.path.endsWith("/adapters/qv/adapter_model.safetensors"));
    assert.equal(adapterFile?.token, token, "the Hub snippet's adapter came from the test Hub, with its token");
    assert.ok(hub.requests.some((r) => r.path === "/api/models/user/my-lora/revision/v1.0"), "revision v1.0");
    assert.ok(models.requests.some((r) => r.path === "/llama-tiny/onnx/model.onnx"), "the base came by URL");
  } finally {
    for (const file of files) await rm(file, { force: true });
    await models.close();
    await hub.stop();
    await rm(cacheDir, { recursive: true, force: true });
  }
});

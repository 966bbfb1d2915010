// examples/edge.ts under `deno serve --parallel` (one worker per core, as Deno Deploy runs it), with the base and the
// adapter given as http:// URL locations of a static server on 127.0.0.1: they serve the reference greedy generations (examples/demo/reference_generations.json), also under 20
// concurrent requests spread over both models. Runs once, in the Deno suite (it starts its own Deno).
import { test } from "node:test";
import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { serveFolder } from "./support/static_server.ts";
import { freePort } from "./support/free_port.ts";

const repo = fileURLToPath(new URL("..", import.meta.url));
const deno = join(repo, "node_modules/.bin/deno");
const isBun = (globalThis as { Bun?: unknown }).Bun !== undefined;

interface Generation {
  prompt: string;
  variant: "base" | "adapter";
  text: string;
}

async function complete(url: string, model: string, prompt: string, maxTokens: number): Promise<string> {
  const response = await fetch(`${url}/v1/completions`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ model, prompt, max_tokens: maxTokens, temperature: 0 }),
  });
  const body = await response.json();
  assert.equal(response.status, 200, JSON.stringify(body));
  return body.choices[0].text;
}

test("deno serve --parallel examples/edge.ts serves the reference generations, also 20 at once", {
  skip: isBun,
  timeout: 240_000,
}, async () => {
  const port = await freePort();
  const files = await serveFolder(join(repo, "examples/demo"));
  const child: ChildProcess = spawn(
    deno,
    ["serve", "--parallel", "-A", "--no-check", "--host", "127.0.0.1", "--port", String(port), "examples/edge.ts"],
    {
      cwd: repo,
      env: {
        ...process.env,
        NO_COLOR: "1",
        PEFT_EDGE_BASE: new URL("byte-llama/", files.url).href,
        PEFT_EDGE_ADAPTERS: `python=${new URL("byte-llama-python-lora/", files.url).href}`,
        PEFT_EDGE_THREADS: "1",
      },
      stdio: ["ignore", "pipe", "pipe"],
    },
  );
  let log = "";
  child.stdout!.on("data", (d) => log += d);
  child.stderr!.on("data", (d) => log += d);
  try {
    const url = `http://127.0.0.1:${port}`;
    for (let i = 0; !/Listening/i.test(log); i++) {
      if (i > 600 || child.exitCode !== null) throw new Error(`deno serve did not start:\n${log}`);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    const reference = JSON.parse(await readFile(join(repo, "examples/demo/reference_generations.json"), "utf8"));
    const generations = (reference.generations as Generation[]).filter((g) =>
      g.prompt === "The " || g.prompt === "def "
    );
    const name = (g: Generation) => g.variant === "base" ? "byte-llama" : "python";
    const models = await (await fetch(`${url}/v1/models`)).json();
    assert.deepEqual(models.data.map((m: { id: string }) => m.id).sort(), ["byte-llama", "python"]);
    for (const g of generations) {
      assert.equal(await complete(url, name(g), g.prompt, 120), g.text, `${g.variant} ${g.prompt}`);
    }
    // 20 at once over both workers and both models: each equals its reference (first 30 bytes).
    const many = Array.from({ length: 20 }, (_, i) => generations[i % generations.length]);
    const texts = await Promise.all(many.map((g) => complete(url, name(g), g.prompt, 30)));
    texts.forEach((text, i) => assert.equal(text, many[i].text.slice(0, 30), `request ${i}`));
    for (const file of ["/byte-llama/onnx/model.onnx", "/byte-llama-python-lora/adapter_model.safetensors"]) {
      assert.ok(files.requests.some((r) => r.path === file), `the workers fetched ${file} by URL`);
    }
  } finally {
    child.kill("SIGTERM");
    await new Promise((resolve) => child.exitCode !== null ? resolve(null) : child.once("exit", resolve));
    await files.close();
  }
});

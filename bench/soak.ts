/**
 * A bounded soak of the HTTP service: starts examples/serve.ts (with the
 * runtime running this script) on 127.0.0.1 and sends mixed traffic for a
 * fixed time or request count, then stops by itself: greedy completions,
 * streamed and not, to the base and two adapters; clients that disconnect
 * mid-stream or mid-request; an adapter loaded and deleted over and over
 * through the admin routes. Every greedy answer is compared with the same
 * request served alone before the soak. Records the server's RSS over
 * time, whether it stayed alive, its exit status after SIGTERM, and the
 * errors it logged; prints one JSON report.
 *
 * ```sh
 * deno run -A bench/soak.ts --seconds 180 --concurrency 6
 * bun bench/soak.ts --seconds 60 --max-requests 2000
 * ```
 * Exits 1 on a wrong answer, a 5xx, a dead server, or a non-zero exit status.
 * @module
 */
import { spawn } from "node:child_process";
import { copyFile, mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import process from "node:process";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";

const { values } = parseArgs({
  args: process.argv.slice(2),
  options: {
    seconds: { type: "string", default: "180" },
    "max-requests": { type: "string", default: "50000" },
    concurrency: { type: "string", default: "6" },
    seed: { type: "string", default: "1" },
  },
});
const SECONDS = Number(values.seconds);
const MAX_REQUESTS = Number(values["max-requests"]);
const CONCURRENCY = Number(values.concurrency);
const ADMIN = "soak-admin-token-0123456789";
const DEMO = fileURLToPath(new URL("../examples/demo/", import.meta.url));
const isDeno = "Deno" in globalThis;

let rngState = Number(values.seed) >>> 0;
function random(): number {
  rngState = (rngState + 0x6d2b79f5) >>> 0;
  let t = Math.imul(rngState ^ (rngState >>> 15), rngState | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
}
const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)];

/** A root with the demo adapter twice: as is, and with alpha doubled (so its answers differ). */
async function adapterRoot(): Promise<string> {
  const dir = await mkdtemp(`${tmpdir()}/peft-edge-soak-`);
  const source = `${DEMO}byte-llama-python-lora`;
  for (const [name, scale] of [["python", 1], ["python-x2", 2]] as const) {
    await mkdir(`${dir}/${name}`);
    const config = JSON.parse(await readFile(`${source}/adapter_config.json`, "utf8"));
    config.lora_alpha *= scale;
    await writeFile(`${dir}/${name}/adapter_config.json`, JSON.stringify(config));
    await copyFile(`${source}/adapter_model.safetensors`, `${dir}/${name}/adapter_model.safetensors`);
  }
  return dir;
}

const root = await adapterRoot();
const args = [
  "examples/serve.ts",
  "--base",
  `${DEMO}byte-llama`,
  "--adapter",
  `python=${root}/python`,
  "--adapter-root",
  root,
  "--port",
  "0",
  "--max-queued",
  "256",
];
const child = spawn(process.execPath, isDeno ? ["run", "-A", ...args] : args, {
  env: { ...process.env, PEFT_EDGE_ADMIN_TOKEN: ADMIN, NO_COLOR: "1" },
  stdio: ["ignore", "pipe", "pipe"],
});
let serverLog = "";
child.stderr!.on("data", (chunk) => (serverLog += chunk));
let exit: { code: number | null; signal: string | null } | undefined;
const exited = new Promise<void>((resolve) =>
  child.once("exit", (code, signal) => {
    exit = { code, signal };
    resolve();
  })
);
const url = await new Promise<string>((resolve, reject) => {
  let out = "";
  child.stdout!.on("data", (chunk) => {
    out += chunk;
    const match = out.match(/listening on (http:\/\/127\.0\.0\.1:\d+)\n/);
    if (match) resolve(match[1]);
  });
  void exited.then(() => reject(new Error(`the server exited early: ${serverLog}`)));
});

const JSON_HEADERS = { "content-type": "application/json" };
const PROMPTS = ["def ", "import ", "The ", "    return ", "class "];
const MODELS = ["byte-llama", "python", "x2"];
const MAX_TOKENS = 24;

async function complete(model: string, prompt: string, stream: boolean, signal?: AbortSignal) {
  const response = await fetch(`${url}/v1/completions`, {
    method: "POST",
    headers: JSON_HEADERS,
    body: JSON.stringify({ model, prompt, max_tokens: MAX_TOKENS, temperature: 0, stream }),
    signal,
  });
  if (response.status !== 200) return { status: response.status, text: await response.text() };
  if (!stream) return { status: 200, text: (await response.json()).choices[0].text as string };
  const raw = await response.text();
  const events = raw.split("\n\n").filter((e) => e.startsWith("data: {")).map((e) => JSON.parse(e.slice(6)));
  if (events.some((e) => e.error)) return { status: 200, text: raw, streamError: true };
  return { status: 200, text: events.map((e) => e.choices[0]?.text ?? "").join("") };
}

async function admin(method: string, path: string, body?: unknown) {
  const response = await fetch(`${url}${path}`, {
    method,
    headers: { ...JSON_HEADERS, authorization: `Bearer ${ADMIN}` },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  await response.body?.cancel();
  return response.status;
}

// Expected answers: each request alone, before any load.
assertStatus(await admin("POST", "/v1/adapters", { id: "python-x2", name: "x2" }), [201]);
const expected = new Map<string, string>();
for (const model of MODELS) {
  for (const prompt of PROMPTS) {
    const reply = await complete(model, prompt, false);
    if (reply.status !== 200) throw new Error(`reference ${model} ${prompt}: ${reply.status} ${reply.text}`);
    expected.set(`${model}|${prompt}`, reply.text);
  }
}

function assertStatus(status: number, allowed: number[]): void {
  if (!allowed.includes(status)) throw new Error(`unexpected status ${status}`);
}

/** VmRSS of the server in MiB (Linux), or NaN. */
async function rssMiB(): Promise<number> {
  try {
    const status = await readFile(`/proc/${child.pid}/status`, "utf8");
    return Number(status.match(/VmRSS:\s+(\d+) kB/)?.[1]) / 1024;
  } catch {
    return NaN;
  }
}

const counts: Record<string, number> = {};
const statuses: Record<string, number> = {};
const wrong: string[] = [];
const failures: string[] = [];
const count = (key: string) => (counts[key] = (counts[key] ?? 0) + 1);
const rss: Array<[seconds: number, mib: number]> = [];
const started = Date.now();
const deadline = started + SECONDS * 1000;
let sent = 0;
let aliveThroughout = true;

const sampler = setInterval(async () => {
  rss.push([Math.round((Date.now() - started) / 1000), Math.round(await rssMiB())]);
  if (child.exitCode !== null || child.signalCode !== null) aliveThroughout = false;
}, 5000);
rss.push([0, Math.round(await rssMiB())]);

async function oneRequest(): Promise<void> {
  const kind = pick(["plain", "plain", "stream", "stream", "stream-disconnect", "plain-disconnect", "adapter-cycle"]);
  count(kind);
  const model = pick(MODELS);
  const prompt = pick(PROMPTS);
  try {
    if (kind === "adapter-cycle") {
      const deleted = await admin("DELETE", "/v1/adapters/x2");
      statuses[`delete ${deleted}`] = (statuses[`delete ${deleted}`] ?? 0) + 1;
      const loaded = await admin("POST", "/v1/adapters", { id: "python-x2", name: "x2" });
      statuses[`load ${loaded}`] = (statuses[`load ${loaded}`] ?? 0) + 1;
      if (loaded >= 500 && loaded !== 503) failures.push(`load answered ${loaded}`);
      return;
    }
    if (kind.endsWith("disconnect")) {
      const controller = new AbortController();
      setTimeout(() => controller.abort(), 5 + random() * 60);
      await complete(model, prompt, kind.startsWith("stream"), controller.signal).catch(() => {});
      return;
    }
    const reply = await complete(model, prompt, kind === "stream");
    statuses[reply.status] = (statuses[reply.status] ?? 0) + 1;
    if (reply.status === 404 && model === "x2") return; // deleted by a cycle at that moment
    if (reply.status === 503) return; // refused with Retry-After: allowed under load
    if (reply.status !== 200 || reply.streamError) {
      failures.push(`${kind} ${model}: ${reply.status} ${reply.text.slice(0, 200)}`);
      return;
    }
    if (reply.text !== expected.get(`${model}|${prompt}`)) {
      wrong.push(`${kind} ${model} ${JSON.stringify(prompt)}: ${JSON.stringify(reply.text)}`);
    }
  } catch (error) {
    failures.push(`${kind} ${model}: ${(error as Error).message}`);
  }
}

await Promise.all(Array.from({ length: CONCURRENCY }, async () => {
  while (Date.now() < deadline && sent < MAX_REQUESTS && failures.length < 50) {
    sent++;
    await oneRequest();
  }
}));
clearInterval(sampler);
rss.push([Math.round((Date.now() - started) / 1000), Math.round(await rssMiB())]);
const aliveAtEnd = child.exitCode === null && child.signalCode === null;
const health = aliveAtEnd ? (await fetch(`${url}/health`).then((r) => r.json()).catch(() => null)) : null;
child.kill("SIGTERM");
await Promise.race([exited, new Promise((r) => setTimeout(r, 20_000))]);
if (!exit) child.kill("SIGKILL");
await rm(root, { recursive: true, force: true });

const third = Math.max(1, Math.floor(rss.length / 3));
const mean = (xs: Array<[number, number]>) => xs.reduce((s, [, m]) => s + m, 0) / xs.length;
const report = {
  runtime: isDeno ? "deno" : "bun",
  seconds: Math.round((Date.now() - started) / 1000),
  requests: sent,
  byKind: counts,
  statuses,
  wrongAnswers: wrong.length,
  wrongExamples: wrong.slice(0, 5),
  failures: failures.length,
  failureExamples: failures.slice(0, 5),
  aliveThroughout: aliveThroughout && aliveAtEnd,
  healthAtEnd: health,
  exitAfterSigterm: exit ?? "did not exit within 20 s",
  rssMiB: {
    first: rss[0][1],
    last: rss.at(-1)![1],
    max: Math.max(...rss.map(([, m]) => m)),
    meanFirstThird: Math.round(mean(rss.slice(1, 1 + third))),
    meanLastThird: Math.round(mean(rss.slice(-third))),
    samples: rss,
  },
  serverErrorLines: serverLog.split("\n").filter((l) => /^error|unhandled|uncaught|panic/i.test(l)).slice(0, 10),
};
console.log(JSON.stringify(report, null, 2));
// Deno reports a child it sent SIGTERM as killed (code null) even when it exited 0 after shutting down.
const cleanExit = exit?.code === 0 || (isDeno && exit?.code === null && /stopped/.test(serverLog));
process.exit(wrong.length === 0 && failures.length === 0 && report.aliveThroughout && cleanExit ? 0 : 1);

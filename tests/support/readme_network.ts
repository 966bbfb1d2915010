/**
 * Preloaded (`deno run --preload`) by tests/readme_snippets.test.ts: routes
 * fetches of `https://models.example/` (the README's example host) to the
 * local server named by `README_MODELS_EXAMPLE`, so that snippets run as
 * written, without the network. Every other URL is fetched as usual.
 * @module
 */
import process from "node:process";

const target = process.env.README_MODELS_EXAMPLE?.replace(/\/+$/, "");
const HOST = "https://models.example/";

if (target) {
  const real = globalThis.fetch;
  globalThis.fetch = (input: RequestInfo | URL, init?: RequestInit): Promise<Response> => {
    const url = input instanceof Request ? input.url : String(input);
    if (!url.startsWith(HOST)) return real(input, init);
    const local = `${target}/${url.slice(HOST.length)}`;
    return real(input instanceof Request ? new Request(local, input) : local, init);
  };
}

// Drives examples/browser in headless Chromium (playwright-core, Debian's chromium) and prints one JSON line:
// { generations: [{ which, prompt, text, shown }], requests: [paths], errors: [page errors] }.
// Usage: node tests/support/browser_demo.mjs URL JOBS_JSON   (run under Node by tests/browser.test.ts)
import { launchChromium } from "./chromium.mjs";

const [url, jobsJson] = process.argv.slice(2);
const jobs = JSON.parse(jobsJson);
const browser = await launchChromium();
try {
  const page = await browser.newPage();
  const requests = [];
  const errors = [];
  page.on("request", (r) => requests.push(new URL(r.url()).pathname));
  page.on("pageerror", (e) => errors.push(String(e)));
  page.on("console", (m) => m.type() === "error" && errors.push(m.text()));
  await page.goto(url);
  await page.evaluate(() => globalThis.peftDemo.ready);
  const generations = [];
  for (const { which, prompt, maxNewTokens } of jobs) {
    const text = await page.evaluate(
      ([w, p, n]) => globalThis.peftDemo.generate(w, p, n),
      [which, prompt, maxNewTokens],
    );
    const shown = await page.textContent("#output");
    generations.push({ which, prompt, text, shown });
  }
  console.log(JSON.stringify({ generations, requests, errors }));
} finally {
  await browser.close();
}

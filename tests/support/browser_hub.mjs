// Drives tests/support/browser_hub_page.ts in headless Chromium (playwright-core, Debian's chromium) through the
// phases of tests/browser_hub_cache.test.ts and prints one JSON line: { phases: { name: result }, keys, errors }.
// Before each phase it requests `<hub>/__mark/<phase>`, so the test can split the test Hub's request log by phase.
// Chromium's HTTP cache is switched off: a load that reaches the Hub server not at all was served by the Cache API.
// Usage: node tests/support/browser_hub.mjs PAGE_URL SPEC_JSON   (run under Node by the test)
import { launchChromium } from "./chromium.mjs";

const [url, specJson] = process.argv.slice(2);
const spec = JSON.parse(specJson);
const browser = await launchChromium();
try {
  const context = await browser.newContext(); // one profile: its pages share the Cache API
  const page = await context.newPage();
  const cdp = await context.newCDPSession(page);
  await cdp.send("Network.enable");
  await cdp.send("Network.setCacheDisabled", { cacheDisabled: true });
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  const phases = {};
  const mark = (name) => fetch(`${spec.load.hubUrl}/__mark/${name}`).then((r) => r.arrayBuffer());
  const run = async (name, extra = {}) => {
    await mark(name);
    phases[name] = await page.evaluate((job) => globalThis.hubPage.loadAndRun(job), { ...spec.load, ...extra });
  };
  const corrupt = () =>
    page.evaluate(([r, c, f]) => globalThis.hubPage.corruptCached(r, c, f), [
      spec.load.adapter,
      spec.adapterCommit,
      spec.file,
    ]);

  await page.goto(url);
  await run("first");
  await run("again"); // same page, a new load
  await page.reload();
  await run("reload");
  await run("pinned", { baseRevision: spec.baseCommit, adapterRevision: spec.adapterCommit });
  const keys = await page.evaluate(() => globalThis.hubPage.cachedKeys());
  phases.corrupted = await corrupt();
  await run("verified", { verifyCache: true });
  await page.reload();
  phases.corruptedAgain = await corrupt();
  await run("offline", { verifyCache: true, localFilesOnly: true });
  // The test switches the Hub to cutting downloads short at this mark (no resume): nothing may be stored.
  await page.evaluate(() => globalThis.hubPage.clearCache());
  await run("truncated", { retries: 0 });
  phases.keysAfterTruncated = await page.evaluate(() => globalThis.hubPage.cachedKeys());
  await run("recovered");
  // Two tabs load at once into an empty cache (the test slows the Hub down at this mark): the Web Lock per blob
  // lets one download while the other waits and then finds the blob.
  await page.evaluate(() => globalThis.hubPage.clearCache());
  const other = await context.newPage();
  const otherCdp = await context.newCDPSession(other);
  await otherCdp.send("Network.enable");
  await otherCdp.send("Network.setCacheDisabled", { cacheDisabled: true });
  other.on("pageerror", (e) => errors.push(String(e)));
  await other.goto(url);
  await mark("tabs");
  const both = await Promise.all(
    [page, other].map((p) => p.evaluate((job) => globalThis.hubPage.loadAndRun(job), spec.load)),
  );
  phases.tabs = both[0];
  phases.otherTab = both[1];
  await mark("end");
  console.log(JSON.stringify({ phases, keys, errors }));
} finally {
  await browser.close();
}

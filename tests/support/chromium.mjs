// Headless Debian Chromium (or $CHROMIUM) through playwright-core, with the flags it needs as root and offline;
// shared by the drivers tests/support/browser_demo.mjs and browser_hub.mjs (run under Node).
import { chromium } from "playwright-core";

export function launchChromium() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
}

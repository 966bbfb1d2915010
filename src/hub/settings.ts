/**
 * Where Hub settings come from: explicit options first, then the environment
 * variables Python `huggingface_hub` reads, then its defaults.
 * @module
 */
import { readEnv } from "../runtime/env.ts";
import { localFs } from "../runtime/fs.ts";
import { DEFAULT_CACHE_NAME } from "./cache_api.ts";

/**
 * The public Hugging Face Hub.
 *
 * @example
 * ```ts
 * import { DEFAULT_HUB_URL } from "./settings.ts";
 * console.log(DEFAULT_HUB_URL); // "https://huggingface.co"
 * ```
 */
export const DEFAULT_HUB_URL = "https://huggingface.co";

/**
 * Where Hub downloads are kept: `disk`, the Python-layout folder
 * `cacheDir`; `cache-api`, the web Cache API (`caches.open(cacheName)`,
 * kept across page reloads); `memory`, for this load only.
 *
 * @example
 * ```ts
 * import type { HubCacheStorage } from "./settings.ts";
 * const storage: HubCacheStorage = "cache-api";
 * ```
 */
export type HubCacheStorage = "disk" | "cache-api" | "memory";

/**
 * Options that decide endpoint, token, cache storage and offline mode.
 *
 * @example
 * ```ts
 * import type { HubSettingsInput } from "./settings.ts";
 * const input: HubSettingsInput = { hubUrl: "https://hf-mirror.example", localFilesOnly: true };
 * ```
 */
export interface HubSettingsInput {
  /** Hub endpoint; else `HF_ENDPOINT`; else the public Hub. */
  hubUrl?: string;
  /** Access token; else `HF_TOKEN`; else the `huggingface-cli login` token file. */
  token?: string;
  /** Cache folder; else `HF_HUB_CACHE`, `HF_HOME/hub`, `~/.cache/huggingface/hub`. */
  cacheDir?: string;
  /**
   * Cache storage; default `disk` where there is a file system (Deno, Bun,
   * Node), else `cache-api` where `globalThis.caches` answers (browsers),
   * else `memory`.
   */
  cacheStorage?: HubCacheStorage;
  /** The Cache API cache for `cache-api` (default `peft-edge-hub`). */
  cacheName?: string;
  /** Cache only; also turned on by `HF_HUB_OFFLINE=1`. */
  localFilesOnly?: boolean;
}

/**
 * The settled settings. `token` must never be logged or put in a message.
 *
 * @example
 * ```ts
 * import { hubSettings, type HubSettings } from "./settings.ts";
 * const settings: HubSettings = hubSettings({ cacheDir: "/tmp/hf" });
 * ```
 */
export interface HubSettings {
  endpoint: string;
  token?: string;
  /** `undefined` when no home folder is known (no file system). */
  cacheDir?: string;
  /** `undefined`: chosen by the runtime (see {@linkcode HubSettingsInput.cacheStorage}). */
  cacheStorage?: HubCacheStorage;
  /** Name of the Cache API cache. */
  cacheName: string;
  offline: boolean;
}

/**
 * Whether an environment value means "on" the way Python's `_is_true` reads
 * it (`1`, `ON`, `YES`, `TRUE`, any case).
 *
 * @example
 * ```ts
 * import { isTruthy } from "./settings.ts";
 * isTruthy("1"); // true
 * isTruthy("0"); // false
 * ```
 */
export function isTruthy(value: string | undefined): boolean {
  return ["1", "ON", "YES", "TRUE"].includes((value ?? "").trim().toUpperCase());
}

/**
 * The default cache folder, as Python computes it: `HF_HUB_CACHE`, else
 * `HUGGINGFACE_HUB_CACHE`, else `HF_HOME/hub`, else
 * `$XDG_CACHE_HOME/huggingface/hub`, else `~/.cache/huggingface/hub`.
 *
 * @example
 * ```ts
 * import { defaultCacheDir } from "./settings.ts";
 * console.log(defaultCacheDir()); // e.g. "/home/me/.cache/huggingface/hub"
 * ```
 */
export function defaultCacheDir(): string | undefined {
  const home = readEnv("HOME") || readEnv("USERPROFILE");
  // Python expands a leading "~" in these variables.
  const expand = (path: string) => (path === "~" || path.startsWith("~/")) && home ? home + path.slice(1) : path;
  const explicit = readEnv("HF_HUB_CACHE") || readEnv("HUGGINGFACE_HUB_CACHE");
  if (explicit) return expand(explicit);
  const hfHome = readEnv("HF_HOME");
  if (hfHome) return `${expand(hfHome)}/hub`;
  const xdg = readEnv("XDG_CACHE_HOME");
  if (xdg) return `${expand(xdg)}/huggingface/hub`;
  return home ? `${home}/.cache/huggingface/hub` : undefined;
}

/**
 * Settles endpoint, token, cache storage and offline mode from options and
 * environment, read at call time.
 *
 * @example
 * ```ts
 * import { hubSettings } from "./settings.ts";
 * const s = hubSettings({ hubUrl: "http://127.0.0.1:8080/" });
 * console.log(s.endpoint); // "http://127.0.0.1:8080"
 * ```
 */
export function hubSettings(input: HubSettingsInput = {}): HubSettings {
  const endpoint = (input.hubUrl || readEnv("HF_ENDPOINT") || DEFAULT_HUB_URL).replace(/\/+$/, "");
  return {
    endpoint,
    token: input.token || readEnv("HF_TOKEN") || undefined,
    cacheDir: input.cacheDir || defaultCacheDir(),
    cacheStorage: input.cacheStorage,
    cacheName: input.cacheName || DEFAULT_CACHE_NAME,
    offline: input.localFilesOnly === true || isTruthy(readEnv("HF_HUB_OFFLINE")),
  };
}

/**
 * Where `huggingface-cli login` keeps the token, as Python computes it:
 * `HF_TOKEN_PATH`, else `HF_HOME/token`, else
 * `$XDG_CACHE_HOME/huggingface/token`, else `~/.cache/huggingface/token`.
 *
 * @example
 * ```ts
 * import { tokenFilePath } from "./settings.ts";
 * console.log(tokenFilePath()); // e.g. "/home/me/.cache/huggingface/token"
 * ```
 */
export function tokenFilePath(): string | undefined {
  const home = readEnv("HOME") || readEnv("USERPROFILE");
  const expand = (path: string) => (path === "~" || path.startsWith("~/")) && home ? home + path.slice(1) : path;
  const explicit = readEnv("HF_TOKEN_PATH");
  if (explicit) return expand(explicit);
  const hfHome = readEnv("HF_HOME");
  if (hfHome) return `${expand(hfHome)}/token`;
  const xdg = readEnv("XDG_CACHE_HOME");
  if (xdg) return `${expand(xdg)}/huggingface/token`;
  return home ? `${home}/.cache/huggingface/token` : undefined;
}

/**
 * The token saved by `huggingface-cli login` (trimmed), or `undefined`
 * where there is no such file or no file system.
 *
 * @example
 * ```ts
 * import { readTokenFile } from "./settings.ts";
 * const token = await readTokenFile(); // "hf_..." or undefined
 * ```
 */
export async function readTokenFile(): Promise<string | undefined> {
  const path = tokenFilePath();
  if (path === undefined) return undefined;
  try {
    const text = new TextDecoder().decode(await (await localFs()).readFile(path)).trim();
    return text || undefined;
  } catch {
    return undefined;
  }
}

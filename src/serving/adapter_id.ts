/**
 * Adapter ids sent over HTTP, checked before anything is read or fetched:
 * an id is a name under one of the configured local roots, or a Hub repo
 * id. Never a URL, an absolute path, a `..` segment, a backslash, or a
 * symbolic link below a root, so a request can neither leave the roots nor
 * make the server contact a host of its choosing (the Hub endpoint is
 * fixed by configuration).
 * @module
 */
import { isValidRepoId, unsafeRepoPath } from "../hub/repo_id.ts";
import { localFs } from "../runtime/fs.ts";
import type { AdapterLocation } from "./location.ts";
import { PoolError } from "./pool_error.ts";

/**
 * Where HTTP-loaded adapters may come from.
 *
 * @example
 * ```ts
 * import type { AdapterSources } from "./adapter_id.ts";
 * const sources: AdapterSources = { localRoots: ["/srv/adapters"], allowHub: false };
 * ```
 */
export interface AdapterSources {
  /** Folders whose subfolders (by relative name) may be loaded. */
  localRoots?: readonly string[];
  /** Whether ids not found under a root are loaded from the Hub (default true). */
  allowHub?: boolean;
}

const SEGMENT = /^[A-Za-z0-9_][A-Za-z0-9_.-]*$/;
const MAX_SEGMENTS = 4;

function bad(message: string, field = "id"): PoolError {
  return new PoolError("invalid", message, { field });
}

/** Why an id is not a safe relative name, or undefined when it is. */
function unsafeId(id: string): string | undefined {
  if (id.length === 0 || id.length > 256) return "must be 1 to 256 characters";
  if (id.includes(":")) return "must not be a URL or contain ':'";
  if (id.startsWith("/") || id.includes("\\")) return "must not be an absolute path or contain '\\'";
  const segments = id.split("/");
  if (segments.some((s) => s === "." || s === "..")) return "must not contain '.' or '..' segments";
  if (segments.length > MAX_SEGMENTS) return `must have at most ${MAX_SEGMENTS} '/'-separated parts`;
  if (!segments.every((s) => SEGMENT.test(s))) {
    return "parts must be letters, digits, '_', '-' and '.', not starting with '.' or '-'";
  }
  return undefined;
}

/** The folder `root/id` when it exists and no part of it below the root is a symbolic link. */
async function underRoot(root: string, id: string): Promise<string | undefined> {
  const fs = await localFs();
  let path = root.replace(/\/+$/, "");
  for (const segment of id.split("/")) {
    path = `${path}/${segment}`;
    try {
      const info = await fs.lstat(path);
      if (info.isSymbolicLink() || !info.isDirectory()) return undefined;
    } catch {
      return undefined;
    }
  }
  return path;
}

/**
 * Checks an adapter id and finds it: the first configured root holding a
 * folder of that name, else the Hub (when allowed and the id is a repo id).
 * Throws a {@linkcode PoolError} of kind `invalid` for an unsafe id or
 * revision, `not_found` when it is nowhere (both name the field at fault).
 *
 * @example
 * ```ts
 * import { locateAdapter } from "./adapter_id.ts";
 * await locateAdapter("byte-llama-python-lora", undefined, { localRoots: ["examples/demo"] });
 * // { kind: "local", path: "examples/demo/byte-llama-python-lora", id: "byte-llama-python-lora" }
 * await locateAdapter("org/lora", "v1", {}); // { kind: "hub", repo: "org/lora", revision: "v1" }
 * ```
 */
export async function locateAdapter(
  id: string,
  revision: string | undefined,
  sources: AdapterSources,
): Promise<AdapterLocation> {
  const why = unsafeId(id);
  if (why) throw bad(`adapter id ${JSON.stringify(id.slice(0, 80))} ${why}`);
  if (revision !== undefined) {
    const badRevision = revision.length > 200 || !/^[A-Za-z0-9_.\/-]+$/.test(revision) ||
      unsafeRepoPath(revision) !== undefined;
    if (badRevision) throw bad("revision must be a branch, tag or commit name", "revision");
  }
  for (const root of sources.localRoots ?? []) {
    const path = await underRoot(root, id);
    if (path === undefined) continue;
    if (revision !== undefined) throw bad("revision applies only to Hub adapters, not local ones", "revision");
    return { kind: "local", path, id };
  }
  if ((sources.allowHub ?? true) && isValidRepoId(id)) return { kind: "hub", repo: id, revision };
  const where = [
    (sources.localRoots?.length ?? 0) > 0 ? "under the configured adapter folders" : "",
    (sources.allowHub ?? true) ? "as a Hub repo id (`name` or `org/name`)" : "",
  ].filter(Boolean).join(" or ");
  throw new PoolError(
    "not_found",
    `no adapter ${JSON.stringify(id)} ${where || "(no adapter sources are configured)"}`,
    {
      field: "id",
    },
  );
}

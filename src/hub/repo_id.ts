/**
 * Hub naming rules: repo ids, commit hashes, revisions and file paths, checked
 * the way Python `huggingface_hub` checks them before any request is made.
 * @module
 */

const SEGMENT = /^[A-Za-z0-9_](?:[A-Za-z0-9_.-]*[A-Za-z0-9_])?$/;
const COMMIT = /^[0-9a-f]{40}$/;

/**
 * Whether a string is a valid model repo id: `name` or `org/name`, each part
 * made of letters, digits, `-`, `_` and `.`, starting and ending with a letter,
 * digit or `_`, no `--` or `..`, not ending in `.git`, name at most 96
 * characters (the rules of `huggingface_hub.validate_repo_id`).
 *
 * @example
 * ```ts
 * import { isValidRepoId } from "./repo_id.ts";
 * isValidRepoId("peft-internal/tiny-lora"); // true
 * isValidRepoId("a/b/c");                   // false
 * isValidRepoId("bad--name");               // false
 * ```
 */
export function isValidRepoId(repoId: string): boolean {
  const parts = repoId.split("/");
  if (parts.length > 2 || repoId.includes("--") || repoId.includes("..")) return false;
  if (repoId.endsWith(".git")) return false;
  const name = parts[parts.length - 1];
  if (name.length > 96) return false;
  return parts.every((part) => SEGMENT.test(part));
}

/**
 * Whether a revision is a full commit hash (40 lowercase hex digits), which
 * can be served from the cache without asking the server.
 *
 * @example
 * ```ts
 * import { isCommitHash } from "./repo_id.ts";
 * isCommitHash("main"); // false
 * isCommitHash("0123456789abcdef0123456789abcdef01234567"); // true
 * ```
 */
export function isCommitHash(revision: string): boolean {
  return COMMIT.test(revision);
}

/**
 * Why a path inside a repo (a file name, subfolder or revision used as a
 * cache path) is unsafe, or `undefined` when it is fine: no empty, `.` or
 * `..` segments, not absolute, no backslash or drive letter.
 *
 * @example
 * ```ts
 * import { unsafeRepoPath } from "./repo_id.ts";
 * unsafeRepoPath("onnx/model.onnx"); // undefined
 * unsafeRepoPath("../etc/passwd");   // "contains a '.' or '..' segment"
 * ```
 */
export function unsafeRepoPath(path: string): string | undefined {
  if (path === "") return "is empty";
  if (path.includes("\\")) return "contains a backslash";
  if (path.startsWith("/") || /^[A-Za-z]:/.test(path)) return "is absolute";
  const segments = path.split("/");
  if (segments.some((s) => s === "")) return "contains an empty segment";
  if (segments.some((s) => s === "." || s === "..")) return "contains a '.' or '..' segment";
  return undefined;
}

/**
 * The cache folder name Python `huggingface_hub` uses for a model repo.
 *
 * @example
 * ```ts
 * import { repoFolderName } from "./repo_id.ts";
 * repoFolderName("org/name"); // "models--org--name"
 * ```
 */
export function repoFolderName(repoId: string): string {
  return ["models", ...repoId.split("/")].join("--");
}

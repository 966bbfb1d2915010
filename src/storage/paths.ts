/**
 * File names inside a folder-like source: the one check every source uses so
 * that a name can never leave its folder (`..`, absolute, backslashes, NUL).
 * @module
 */

/**
 * `name` normalized (`./a//b` -> `a/b`), or `undefined` when it is empty,
 * absolute, holds a `..` segment, a backslash or a NUL, so it could name a
 * file outside the folder.
 *
 * @example
 * ```ts
 * import { insideFolder } from "./paths.ts";
 * insideFolder("./onnx//model.onnx_data"); // "onnx/model.onnx_data"
 * insideFolder("../etc/passwd"); // undefined
 * ```
 */
export function insideFolder(name: string): string | undefined {
  if (name.startsWith("/") || name.includes("\\") || name.includes("\0") || /^[A-Za-z]:/.test(name)) return undefined;
  const parts = name.split("/").filter((p) => p !== "" && p !== ".");
  if (parts.length === 0 || parts.includes("..")) return undefined;
  return parts.join("/");
}

/**
 * The path of an ONNX external data file relative to the source root, or
 * `undefined` when its `location` escapes the model's folder or names the
 * model file itself (whose bytes are protobuf, not weights).
 *
 * @example
 * ```ts
 * import { externalDataPath } from "./paths.ts";
 * externalDataPath("onnx/model.onnx", "model.onnx_data"); // "onnx/model.onnx_data"
 * externalDataPath("onnx/model.onnx", "./model.onnx"); // undefined
 * ```
 */
export function externalDataPath(modelFile: string, location: string): string | undefined {
  const relative = insideFolder(location);
  if (relative === undefined) return undefined;
  const slash = modelFile.lastIndexOf("/");
  const path = slash < 0 ? relative : `${modelFile.slice(0, slash)}/${relative}`;
  return path === insideFolder(modelFile) ? undefined : path;
}

/**
 * Typed errors. Every error peft-edge raises on bad input is a
 * {@linkcode PeftEdgeError} subclass whose message names the file, key or
 * field at fault, so callers can `instanceof`-match and users can fix input.
 *
 * @example
 * ```ts
 * import { SafetensorsError } from "./errors.ts";
 * try {
 *   throw new SafetensorsError("header length 9e9 exceeds file size", { file: "adapter_model.safetensors" });
 * } catch (e) {
 *   if (e instanceof SafetensorsError) console.error(e.file, e.message);
 * }
 * ```
 * @module
 */

/** Where an error came from: the file and, within it, the key or field. */
export interface ErrorContext {
  /** File name or path the bad input came from. */
  file?: string;
  /** Tensor key, config field or module name at fault. */
  key?: string;
  /** The underlying error, if any. */
  cause?: unknown;
  /**
   * Details for server-side logs only (absolute paths, what the operating
   * system or a parser said); never part of `message`, never sent over HTTP.
   */
  detail?: string;
}

/**
 * Base class of every error peft-edge raises deliberately.
 *
 * @example
 * ```ts
 * import { PeftEdgeError } from "./errors.ts";
 * const e = new PeftEdgeError("boom", { file: "a.json", key: "r" });
 * console.log(e.message); // "a.json: r: boom"
 * ```
 */
export class PeftEdgeError extends Error {
  /** The class name, as a literal so that minified bundles keep it. */
  override name = "PeftEdgeError";
  /** File the bad input came from, when known. */
  readonly file?: string;
  /** Key, field or module name at fault, when known. */
  readonly key?: string;
  /**
   * Server-side details (absolute paths, parser messages) for logs; never
   * put in `message` and never to be sent to a client.
   */
  readonly detail?: string;

  /** `message` is prefixed with the context's file and key when given. */
  constructor(message: string, context: ErrorContext = {}) {
    const where = [context.file, context.key].filter(Boolean).join(": ");
    super(where ? `${where}: ${message}` : message, { cause: context.cause });
    this.file = context.file;
    this.key = context.key;
    this.detail = context.detail;
  }
}

/**
 * A safetensors file is malformed (header, dtype, offsets, sizes).
 *
 * @example
 * ```ts
 * import { SafetensorsError } from "./errors.ts";
 * new SafetensorsError("unknown dtype F8", { file: "x.safetensors", key: "w" });
 * ```
 */
export class SafetensorsError extends PeftEdgeError {
  /** Always `"SafetensorsError"`, a literal so that minified bundles keep it. */
  override name = "SafetensorsError";
}

/**
 * An `adapter_config.json` (or config object) is invalid for PEFT.
 *
 * @example
 * ```ts
 * import { AdapterConfigError } from "./errors.ts";
 * new AdapterConfigError("must be a positive integer", { file: "adapter_config.json", key: "r" });
 * ```
 */
export class AdapterConfigError extends PeftEdgeError {
  /** Always `"AdapterConfigError"`, a literal so that minified bundles keep it. */
  override name = "AdapterConfigError";
}

/**
 * An adapter does not fit the base model: no module matches, or shapes differ.
 *
 * @example
 * ```ts
 * import { AdapterMismatchError } from "./errors.ts";
 * new AdapterMismatchError("lora_B is [64, 8] but the base weight needs [32, 8]", { key: "model.layers.0.self_attn.q_proj" });
 * ```
 */
export class AdapterMismatchError extends PeftEdgeError {
  /** Always `"AdapterMismatchError"`, a literal so that minified bundles keep it. */
  override name = "AdapterMismatchError";
}

/**
 * An ONNX model file is malformed or uses a layout peft-edge cannot patch.
 *
 * @example
 * ```ts
 * import { OnnxModelError } from "./errors.ts";
 * new OnnxModelError("not a valid ModelProto", { file: "onnx/model.onnx" });
 * ```
 */
export class OnnxModelError extends PeftEdgeError {
  /** Always `"OnnxModelError"`, a literal so that minified bundles keep it. */
  override name = "OnnxModelError";
}

/**
 * A file or folder does not exist in a local folder or in-memory source, or a
 * string is neither a folder nor a Hub repo id. The Hub reports a missing
 * file as a {@linkcode HubError} with `reason: "not_found"`.
 *
 * @example
 * ```ts
 * import { FileNotFoundError } from "./errors.ts";
 * new FileNotFoundError("no such file", { file: "adapters/x/adapter_config.json" });
 * ```
 */
export class FileNotFoundError extends PeftEdgeError {
  /** Always `"FileNotFoundError"`, a literal so that minified bundles keep it. */
  override name = "FileNotFoundError";
}

/**
 * A file below a folder root resolves (through `..`, an absolute name or a
 * symbolic link) to a place outside that root, so it is not read. `file`
 * is the name relative to the root; the message names nothing else (the
 * resolved target is only in `detail`, for server logs).
 *
 * @example
 * ```ts
 * import { FileAccessError } from "./errors.ts";
 * new FileAccessError("resolves to a place outside the folder; not read", { file: "adapter_config.json" });
 * ```
 */
export class FileAccessError extends PeftEdgeError {
  /** Always `"FileAccessError"`, a literal so that minified bundles keep it. */
  override name = "FileAccessError";
}

/** Why a download from an http(s) URL location failed; see {@linkcode UrlError}. */
export type UrlErrorReason =
  | "invalid" // not an http(s) URL, or a file name that escapes the folder
  | "unauthorized" // 401
  | "forbidden" // 403
  | "server" // 5xx or another unexpected status
  | "network" // connection refused, reset or dropped
  | "timeout" // no response, or the body stalled or trickled, within `timeoutMs`
  | "truncated"; // body shorter or longer than its Content-Length

/**
 * A file of an http(s) URL location could not be fetched (a missing file,
 * 404, is a {@linkcode FileNotFoundError}). `url` is the file's URL without
 * its query string.
 *
 * @example
 * ```ts
 * import { UrlError } from "./errors.ts";
 * const e = new UrlError("no response within 30000 ms", {
 *   url: "https://models.example/llama/config.json", file: "config.json", reason: "timeout",
 * });
 * console.log(e.reason, e.url);
 * ```
 */
export class UrlError extends PeftEdgeError {
  /** Always `"UrlError"`, a literal so that minified bundles keep it. */
  override name = "UrlError";
  /** The file's URL (no query string). */
  readonly url: string;
  /** HTTP status, when there was a response. */
  readonly status?: number;
  /** What kind of failure this is. */
  readonly reason: UrlErrorReason;

  /** A failure reading `context.url`. */
  constructor(message: string, context: ErrorContext & { url: string; status?: number; reason: UrlErrorReason }) {
    super(message, context);
    this.url = context.url;
    this.status = context.status;
    this.reason = context.reason;
  }
}

/**
 * A kernel was called with arguments it cannot use (lengths, scale, rank).
 *
 * @example
 * ```ts
 * import { KernelError } from "./errors.ts";
 * new KernelError("scale must be finite, got NaN", { key: "mergeLora" });
 * ```
 */
export class KernelError extends PeftEdgeError {
  /** Always `"KernelError"`, a literal so that minified bundles keep it. */
  override name = "KernelError";
}

/**
 * A feature PEFT has that peft-edge does not support (yet).
 *
 * @example
 * ```ts
 * import { UnsupportedError } from "./errors.ts";
 * new UnsupportedError("isTrainable: true is not supported yet");
 * ```
 */
export class UnsupportedError extends PeftEdgeError {
  /** Always `"UnsupportedError"`, a literal so that minified bundles keep it. */
  override name = "UnsupportedError";
}

/**
 * Text generation was asked for something it cannot do: an empty prompt, a
 * prompt longer than the model's context, an invalid sampling value, or a
 * model whose inputs and outputs are not a decoder with a KV cache.
 *
 * @example
 * ```ts
 * import { GenerationError } from "./errors.ts";
 * new GenerationError("must be a number in (0, 1], got 1.5", { key: "topP" });
 * ```
 */
export class GenerationError extends PeftEdgeError {
  /** Always `"GenerationError"`, a literal so that minified bundles keep it. */
  override name = "GenerationError";
}

/** Why a Hub download failed; see {@linkcode HubError}. */
export type HubErrorReason =
  | "invalid" // bad repo id, revision, file name or token format
  | "not_found" // repository, revision or file does not exist (404)
  | "unauthorized" // 401: private or missing repo, no valid token
  | "gated" // 403 (or 401) on a gated repo: access not granted
  | "forbidden" // 403 for another reason
  | "server" // 5xx or another unexpected status
  | "network" // connection refused, DNS, reset, dropped mid-body
  | "timeout" // no response, or the body stalled or trickled, within `timeoutMs`
  | "truncated" // body shorter or different than announced
  | "cache" // the cache could not store a downloaded file (a full disk, a Cache API quota)
  | "corrupt" // a cached blob fails its SHA-256 / git check and cannot be fetched again (offline)
  | "offline"; // offline mode and the file is not in the cache

/**
 * A file could not be fetched from the Hugging Face Hub (or a compatible
 * server); `reason` says why (`"not_found"` when the repo, revision or file
 * does not exist, `"server"`, `"network"`, ... otherwise). The message names
 * the repo, revision and file, and never the token.
 *
 * @example
 * ```ts
 * import { HubError } from "./errors.ts";
 * const e = new HubError("401 Unauthorized", {
 *   repo: "org/adapter", revision: "main", file: "adapter_config.json", status: 401, reason: "unauthorized",
 * });
 * console.log(e.repo, e.revision, e.status, e.reason);
 * ```
 */
export class HubError extends PeftEdgeError {
  /** Always `"HubError"`, a literal so that minified bundles keep it. */
  override name = "HubError";
  /** Repo id, `org/name`. */
  readonly repo: string;
  /** Revision asked for (branch, tag or commit). */
  readonly revision: string;
  /** HTTP status, when there was a response. */
  readonly status?: number;
  /** What kind of failure this is. */
  readonly reason: HubErrorReason;

  /** A failure reading a file of `context.repo` at `context.revision`. */
  constructor(
    message: string,
    context: ErrorContext & { repo: string; revision: string; status?: number; reason: HubErrorReason },
  ) {
    super(`Hub repo ${context.repo} at revision ${context.revision}: ${message}`, context);
    this.repo = context.repo;
    this.revision = context.revision;
    this.status = context.status;
    this.reason = context.reason;
  }
}

/**
 * The device asked for is not available: `device: "webgpu"` where the runtime
 * has no `navigator.gpu` (Bun, Node) or WebGPU yields no adapter (no driver).
 * Extends {@linkcode UnsupportedError}.
 *
 * @example
 * ```ts
 * import { DeviceUnavailableError } from "./errors.ts";
 * new DeviceUnavailableError("this runtime has no navigator.gpu", { key: "device" });
 * ```
 */
export class DeviceUnavailableError extends UnsupportedError {
  /** Always `"DeviceUnavailableError"`, a literal so that minified bundles keep it. */
  override name = "DeviceUnavailableError";
}

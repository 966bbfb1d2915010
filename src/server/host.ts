/**
 * The seam between the HTTP service and the models: an {@linkcode AdapterHost}
 * loads adapters onto one base model and runs generation with the base or
 * with one of them. The adapter pool (LRU, limits, shared loads) and the
 * routes only ever talk to this interface, so changing how adapters are
 * applied (one merged session per adapter today, one model holding many
 * adapters later) changes only the file that implements it.
 * @module
 */
import type { GenerateOptions, GenerationResult, Prompt, TokenizerLike } from "../generate/mod.ts";
import type { HubSourceOptions } from "../hub/mod.ts";

/**
 * Where an adapter's files are: a local folder (already checked against the
 * configured roots) or a Hub repo id.
 *
 * @example
 * ```ts
 * import type { AdapterLocation } from "./host.ts";
 * const local: AdapterLocation = { kind: "local", path: "/srv/adapters/python" };
 * const hub: AdapterLocation = { kind: "hub", repo: "org/python-lora", revision: "main" };
 * ```
 */
export type AdapterLocation =
  | {
    readonly kind: "local";
    /** The folder. */
    readonly path: string;
    /** The name it was asked for under a root, when it came from a request. */
    readonly id?: string;
  }
  | { readonly kind: "hub"; readonly repo: string; readonly revision?: string };

/**
 * An adapter loaded by a host. The pool holds it until it is evicted or
 * deleted, then calls `release`.
 *
 * @example
 * ```ts
 * import type { HostedAdapter } from "./host.ts";
 * declare const adapter: HostedAdapter;
 * console.log(adapter.bytes);
 * await adapter.release();
 * ```
 */
export interface HostedAdapter {
  /** Memory the adapter holds, in bytes, as counted against the pool's byte limit. */
  readonly bytes: number;
  /** Frees what the adapter holds. Called once, when no request uses it. */
  release(): Promise<void>;
}

/**
 * Hub settings for adapters loaded from the Hub: endpoint, token, cache,
 * offline mode, fetch (the revision comes with each load).
 *
 * @example
 * ```ts
 * import type { HubOptions } from "./host.ts";
 * const hub: HubOptions = { hubUrl: "https://huggingface.co", cacheDir: "/var/cache/hf" };
 * ```
 */
export type HubOptions = Omit<HubSourceOptions, "revision" | "subfolder">;

/**
 * Options of {@linkcode AdapterHost.load}.
 *
 * @example
 * ```ts
 * import type { HostLoadOptions } from "./host.ts";
 * const options: HostLoadOptions = { name: "python", hub: { hubUrl: "http://127.0.0.1:8080" } };
 * ```
 */
export interface HostLoadOptions {
  /** The adapter's public name (for messages and warnings). */
  name: string;
  /** Hub settings (endpoint, token, cache) for Hub locations. */
  hub?: HubOptions;
  /** Receives load warnings (unmatched keys and the like). */
  onWarning?: (message: string) => void;
}

/**
 * A base model that adapters are loaded onto and generation runs on.
 *
 * @example
 * ```ts
 * import type { AdapterHost } from "./host.ts";
 * declare const host: AdapterHost;
 * const python = await host.load({ kind: "local", path: "examples/demo/byte-llama-python-lora" }, { name: "python" });
 * for await (const piece of host.stream(python, "def ", { maxNewTokens: 20 })) console.log(piece);
 * await python.release();
 * ```
 */
export interface AdapterHost {
  /** The tokenizer of the base model (also renders chat templates). */
  readonly tokenizer: TokenizerLike;
  /** Loads an adapter. A failure leaves the host and every loaded adapter as they were. */
  load(location: AdapterLocation, options: HostLoadOptions): Promise<HostedAdapter>;
  /**
   * Generates with the base (`adapter` null) or with a loaded adapter; same
   * contract as `stream` in src/generate (pieces, then the result).
   */
  stream(
    adapter: HostedAdapter | null,
    prompt: Prompt,
    options: GenerateOptions,
  ): AsyncGenerator<string, GenerationResult, undefined>;
}

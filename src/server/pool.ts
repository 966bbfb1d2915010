/**
 * {@linkcode AdapterPool}: the adapters a service holds on one base model,
 * by name, with a maximum count and a maximum number of bytes. When a new
 * adapter does not fit, the least recently used adapters that no request is
 * using are evicted; concurrent loads of the same adapter share one load; a
 * failed load changes nothing.
 * @module
 */
import type { GenerateOptions, GenerationResult, Prompt } from "../generate/mod.ts";
import type { AdapterHost, AdapterLocation, HostedAdapter, HubOptions } from "./host.ts";
import { PoolError } from "./pool_error.ts";

/**
 * Limits and settings of an {@linkcode AdapterPool}.
 *
 * @example
 * ```ts
 * import type { AdapterPoolOptions } from "./pool.ts";
 * const options: AdapterPoolOptions = { baseName: "byte-llama", maxAdapters: 4, maxBytes: 64 << 20 };
 * ```
 */
export interface AdapterPoolOptions {
  /** The name the base model is served under (default `"base"`). */
  baseName?: string;
  /** Adapters held at most, loading ones included (default 8). */
  maxAdapters?: number;
  /** Bytes held by adapters at most (default: no limit); see `HostedAdapter.bytes`. */
  maxBytes?: number;
  /** Generations running at once at most; more are refused as busy (default 64). */
  maxActive?: number;
  /** Hub settings for adapters loaded from the Hub. */
  hub?: HubOptions;
  /** Receives warnings from loads and releases (default: ignored). */
  onWarning?: (message: string) => void;
}

/**
 * An adapter as listed by {@linkcode AdapterPool.list}.
 *
 * @example
 * ```ts
 * import type { AdapterInfo } from "./pool.ts";
 * declare const info: AdapterInfo;
 * if (info.status === "ready") console.log(info.name, info.bytes, info.inUse);
 * ```
 */
export interface AdapterInfo {
  /** The name requests use as `model`. */
  readonly name: string;
  /** Where it was loaded from. */
  readonly location: AdapterLocation;
  /** `loading` until its load finishes. */
  readonly status: "loading" | "ready";
  /** Bytes it holds (0 while loading). */
  readonly bytes: number;
  /** Requests using it now. */
  readonly inUse: number;
  /** When its load finished (ms since the epoch). */
  readonly loadedAt?: number;
  /** When a request or load last used it (ms since the epoch). */
  readonly lastUsedAt: number;
}

/**
 * What the pool holds now, and its limits.
 *
 * @example
 * ```ts
 * import type { PoolUsage } from "./pool.ts";
 * declare const usage: PoolUsage;
 * console.log(`${usage.adapters}/${usage.maxAdapters} adapters, ${usage.active} generations`);
 * ```
 */
export interface PoolUsage {
  /** Adapters held, loading ones included. */
  adapters: number;
  /** Bytes held, by adapters deleted but still finishing a request too. */
  bytes: number;
  /** Generations running now. */
  active: number;
  /** The pool's `maxAdapters`. */
  maxAdapters: number;
  /** The pool's `maxBytes` (Infinity: no limit). */
  maxBytes: number;
  /** The pool's `maxActive`. */
  maxActive: number;
}

/**
 * A model acquired for one generation; release it when done.
 *
 * @example
 * ```ts
 * import type { AdapterPool } from "./pool.ts";
 * declare const pool: AdapterPool;
 * const lease = await pool.acquire("python");
 * try { console.log(lease.adapter !== null); } finally { lease.release(); }
 * ```
 */
export interface Lease {
  /** The model's name. */
  readonly name: string;
  /** The adapter, or null for the base. */
  readonly adapter: HostedAdapter | null;
  /** Gives the model back; calling it again does nothing. */
  release(): void;
}

interface Entry {
  readonly name: string;
  readonly location: AdapterLocation;
  readonly key: string;
  status: "loading" | "ready";
  ready: Promise<HostedAdapter>;
  adapter?: HostedAdapter;
  inUse: number;
  tick: number;
  lastUsedAt: number;
  loadedAt?: number;
  deleted: boolean;
}

/** Identity of a location: the same key means the same adapter files. */
function locationKey(location: AdapterLocation): string {
  return location.kind === "local" ? `local:${location.path}` : `hub:${location.repo}@${location.revision ?? "main"}`;
}

/** A location for messages. */
function describe(location: AdapterLocation): string {
  return location.kind === "local" ? location.path : `${location.repo}@${location.revision ?? "main"}`;
}

/** Checks a limit option: a positive integer (or Infinity where allowed). */
function limit(name: string, value: number | undefined, fallback: number, infinite = false): number {
  const n = value ?? fallback;
  const ok = (infinite && n === Infinity) || (Number.isSafeInteger(n) && n > 0);
  if (!ok) throw new RangeError(`${name} must be a positive integer, got ${String(value)}`);
  return n;
}

/**
 * Adapters on one base model, by name, within a count and byte budget.
 *
 * @example
 * ```ts
 * import { AdapterPool } from "./pool.ts";
 * import type { AdapterHost } from "./host.ts";
 * declare const host: AdapterHost;
 * const pool = new AdapterPool(host, { maxAdapters: 2 });
 * await pool.load("python", { kind: "local", path: "examples/demo/byte-llama-python-lora" });
 * for await (const piece of pool.stream("python", "def ", { maxNewTokens: 16 })) console.log(piece);
 * await pool.delete("python");
 * ```
 */
export class AdapterPool {
  /** The name the base model is served under. */
  readonly baseName: string;
  readonly #host: AdapterHost;
  readonly #options: AdapterPoolOptions;
  readonly #maxAdapters: number;
  readonly #maxBytes: number;
  readonly #maxActive: number;
  readonly #entries = new Map<string, Entry>();
  #tick = 0;
  #drainingBytes = 0;
  #active = 0;

  /** A pool on `host`; a `RangeError` names a limit that is not a positive integer. */
  constructor(host: AdapterHost, options: AdapterPoolOptions = {}) {
    this.#host = host;
    this.#options = options;
    this.baseName = options.baseName ?? "base";
    this.#maxAdapters = limit("maxAdapters", options.maxAdapters, 8);
    this.#maxBytes = limit("maxBytes", options.maxBytes, Infinity, true);
    this.#maxActive = limit("maxActive", options.maxActive, 64);
  }

  /** The host adapters are loaded onto (its tokenizer renders chat prompts). */
  get host(): AdapterHost {
    return this.#host;
  }

  /** Whether `model` names the base or a held adapter (loading or ready). */
  has(model: string): boolean {
    return model === this.baseName || this.#entries.has(model);
  }

  /** Every adapter held, in load order. */
  list(): AdapterInfo[] {
    return [...this.#entries.values()].map((entry) => this.#info(entry));
  }

  /** One adapter, or undefined. */
  get(name: string): AdapterInfo | undefined {
    const entry = this.#entries.get(name);
    return entry && this.#info(entry);
  }

  /** Counts and limits. */
  usage(): PoolUsage {
    let bytes = this.#drainingBytes;
    for (const entry of this.#entries.values()) bytes += entry.adapter?.bytes ?? 0;
    return {
      adapters: this.#entries.size,
      bytes,
      active: this.#active,
      maxAdapters: this.#maxAdapters,
      maxBytes: this.#maxBytes,
      maxActive: this.#maxActive,
    };
  }

  /**
   * Loads an adapter under a name. The same name and location while it is
   * loading or loaded joins that load (`created: false`); the same name with
   * another location is a conflict. Evicts least recently used idle
   * adapters to make room, only once the new one has loaded.
   */
  async load(name: string, location: AdapterLocation): Promise<{ info: AdapterInfo; created: boolean }> {
    if (name === this.baseName) throw new PoolError("conflict", `${name} is the name of the base model`);
    const key = locationKey(location);
    const existing = this.#entries.get(name);
    if (existing) {
      if (existing.key !== key) {
        throw new PoolError(
          "conflict",
          `adapter ${name} is already loaded from ${describe(existing.location)}; delete it first`,
        );
      }
      await existing.ready;
      return { info: this.#info(existing), created: false };
    }
    if (this.#plan(undefined, 0) === undefined) {
      throw new PoolError(
        "capacity",
        `cannot load ${name}: ${this.#maxAdapters} adapter(s) are held and every one is in use or loading`,
      );
    }
    const entry: Entry = {
      name,
      location,
      key,
      status: "loading",
      ready: Promise.resolve() as unknown as Promise<HostedAdapter>,
      inUse: 0,
      tick: ++this.#tick,
      lastUsedAt: Date.now(),
      deleted: false,
    };
    entry.ready = this.#loadEntry(entry);
    entry.ready.catch(() => {}); // the error reaches every caller that awaits it
    this.#entries.set(name, entry);
    await entry.ready;
    return { info: this.#info(entry), created: true };
  }

  /**
   * Removes an adapter. One in use is freed when its last request ends;
   * new requests no longer find it at once. One still loading is a conflict.
   */
  async delete(name: string): Promise<void> {
    const entry = this.#entries.get(name);
    if (!entry) throw new PoolError("not_found", `no adapter named ${name}`);
    if (entry.status === "loading") throw new PoolError("conflict", `adapter ${name} is still loading; try again`);
    this.#entries.delete(name);
    if (entry.inUse > 0) {
      entry.deleted = true;
      this.#drainingBytes += entry.adapter!.bytes;
      return;
    }
    await this.#release(entry.adapter!);
  }

  /**
   * Takes the base (its name) or an adapter for one generation, waiting for
   * an adapter still loading. An adapter in use is never evicted.
   */
  async acquire(model: string): Promise<Lease> {
    if (this.#active >= this.#maxActive) {
      throw new PoolError("busy", `the server is busy: ${this.#maxActive} generations are running; retry later`);
    }
    if (model === this.baseName) {
      this.#active++;
      return this.#lease(model, null, undefined);
    }
    const entry = this.#entries.get(model);
    if (!entry) throw new PoolError("not_found", `no model named ${model}`);
    this.#active++; // counted while waiting for a load too
    entry.inUse++;
    this.#touch(entry);
    let adapter: HostedAdapter;
    try {
      adapter = await entry.ready;
    } catch (cause) {
      this.#active--;
      entry.inUse--;
      throw new PoolError("not_found", `adapter ${model} failed to load`, { cause });
    }
    return this.#lease(model, adapter, entry);
  }

  /**
   * Generates with a model (the base's name or an adapter's): `acquire`,
   * then the host's `stream`, releasing the model when the generator ends.
   */
  async *stream(
    model: string,
    prompt: Prompt,
    options: GenerateOptions,
  ): AsyncGenerator<string, GenerationResult, undefined> {
    const lease = await this.acquire(model);
    try {
      return yield* this.#host.stream(lease.adapter, prompt, options);
    } finally {
      lease.release();
    }
  }

  /** Forgets every adapter: those not in use are released now, the others when their requests end. */
  async close(): Promise<void> {
    const entries = [...this.#entries.values()];
    this.#entries.clear();
    for (const entry of entries) {
      const adapter = await entry.ready.catch(() => undefined);
      if (adapter && entry.inUse === 0) {
        await this.#release(adapter);
      } else if (adapter) {
        entry.deleted = true; // freed when its last request ends
        this.#drainingBytes += adapter.bytes;
      }
    }
  }

  /** The lease of an acquired model (`#active` already counts it). */
  #lease(name: string, adapter: HostedAdapter | null, entry: Entry | undefined): Lease {
    let released = false;
    return {
      name,
      adapter,
      release: () => {
        if (released) return;
        released = true;
        this.#active--;
        if (!entry) return;
        entry.inUse--;
        if (entry.deleted && entry.inUse === 0) {
          this.#drainingBytes -= adapter!.bytes;
          void this.#release(adapter!);
        }
      },
    };
  }

  async #loadEntry(entry: Entry): Promise<HostedAdapter> {
    const forget = () => {
      if (this.#entries.get(entry.name) === entry) this.#entries.delete(entry.name);
    };
    let adapter: HostedAdapter;
    try {
      adapter = await this.#host.load(entry.location, {
        name: entry.name,
        hub: this.#options.hub,
        onWarning: this.#options.onWarning,
      });
    } catch (error) {
      forget();
      throw error;
    }
    const refuse = async (error: PoolError): Promise<never> => {
      forget();
      await this.#release(adapter);
      throw error;
    };
    if (adapter.bytes > this.#maxBytes) {
      return await refuse(
        new PoolError(
          "too_large",
          `adapter ${entry.name} needs ${adapter.bytes} bytes, more than the pool's limit of ${this.#maxBytes}`,
        ),
      );
    }
    const victims = this.#plan(entry, adapter.bytes);
    if (victims === undefined) {
      return await refuse(
        new PoolError("capacity", `no room for adapter ${entry.name}: every other adapter is in use or loading`),
      );
    }
    for (const victim of victims) this.#entries.delete(victim.name);
    entry.adapter = adapter;
    entry.status = "ready";
    entry.loadedAt = Date.now();
    this.#touch(entry);
    for (const victim of victims) await this.#release(victim.adapter!);
    return adapter;
  }

  /**
   * The idle adapters to evict, least recently used first, so that the
   * pool holds `entry` (or one more adapter, when `entry` is undefined) of
   * `bytes` within its limits; undefined when that is impossible.
   */
  #plan(entry: Entry | undefined, bytes: number): Entry[] | undefined {
    let count = this.#entries.size + (entry && this.#entries.get(entry.name) === entry ? 0 : 1);
    let held = this.#drainingBytes + bytes;
    for (const other of this.#entries.values()) if (other !== entry) held += other.adapter?.bytes ?? 0;
    const idle = [...this.#entries.values()]
      .filter((other) => other !== entry && other.status === "ready" && other.inUse === 0)
      .sort((a, b) => a.tick - b.tick);
    const victims: Entry[] = [];
    while (count > this.#maxAdapters || held > this.#maxBytes) {
      const victim = idle.shift();
      if (!victim) return undefined;
      victims.push(victim);
      count--;
      held -= victim.adapter!.bytes;
    }
    return victims;
  }

  #touch(entry: Entry): void {
    entry.tick = ++this.#tick;
    entry.lastUsedAt = Date.now();
  }

  async #release(adapter: HostedAdapter): Promise<void> {
    try {
      await adapter.release();
    } catch (error) {
      this.#options.onWarning?.(`releasing an adapter failed: ${(error as Error).message}`);
    }
  }

  #info(entry: Entry): AdapterInfo {
    return {
      name: entry.name,
      location: entry.location,
      status: entry.status,
      bytes: entry.adapter?.bytes ?? 0,
      inUse: entry.inUse,
      loadedAt: entry.loadedAt,
      lastUsedAt: entry.lastUsedAt,
    };
  }
}

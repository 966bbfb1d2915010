/**
 * {@linkcode AdapterPool}: the adapters a service holds on one base model,
 * by name, with a maximum count and a maximum number of bytes. When a new
 * adapter does not fit, the least recently used adapters that no request is
 * using are evicted; concurrent loads of the same adapter share one load; a
 * failed load changes nothing. Every adapter lives in one `PeftModel`.
 * @module
 */
import {
  type GenerateOptions,
  type GenerationResult,
  type Prompt,
  stream,
  type TokenizerLike,
} from "../generate/mod.ts";
import type { BaseModel } from "../model/base_model.ts";
import type { FileSource } from "../storage/file_source.ts";
import { BatchRouter } from "./batch_router.ts";
import type { SchedulerStats } from "./decode_scheduler.ts";
import { planEviction } from "./eviction.ts";
import { type Lease, makeLease } from "./lease.ts";
import { type AdapterLocation, describeLocation, openLocation, sameLocation } from "./location.ts";
import { PoolError } from "./pool_error.ts";
import { type AdapterPoolOptions, type ResolvedPoolOptions, resolvePoolOptions } from "./pool_options.ts";
import { type ModelAdapter, SharedModel } from "./shared_model.ts";

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
  /**
   * Bytes it holds (0 while loading): in dynamic mode its float32 tensors
   * twice (the tensors and their feed copies), in merged mode a float32
   * copy of the base plus its tensors.
   */
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

interface Entry {
  readonly name: string;
  readonly location: AdapterLocation;
  status: "loading" | "ready";
  ready: Promise<ModelAdapter>;
  adapter?: ModelAdapter;
  bytes: number;
  inUse: number;
  tick: number;
  lastUsedAt: number;
  loadedAt?: number;
  deleted: boolean;
}

/**
 * Adapters on one base model, by name, within a count and byte budget.
 *
 * @example
 * ```ts
 * import { AdapterPool } from "./pool.ts";
 * import { loadBaseModel } from "../model/base_model.ts";
 * const base = await loadBaseModel("examples/demo/byte-llama");
 * const pool = new AdapterPool(base, { baseName: "byte-llama", maxAdapters: 2 });
 * await pool.load("python", { kind: "local", path: "examples/demo/byte-llama-python-lora" });
 * for await (const piece of pool.stream("python", "def ", { maxNewTokens: 16 })) console.log(piece);
 * await pool.delete("python");
 * ```
 */
export class AdapterPool {
  /** The name the base model is served under. */
  readonly baseName: string;
  /** The base model every adapter is loaded onto. */
  readonly base: BaseModel;
  readonly #options: ResolvedPoolOptions;
  readonly #model: SharedModel;
  readonly #batches: BatchRouter;
  readonly #entries = new Map<string, Entry>();
  #tick = 0;
  #drainingBytes = 0;
  #active = 0;

  /**
   * A pool on `base`, reusing its tokenizer and generation defaults unless
   * others are given. A `RangeError` names a limit that is not a positive integer.
   */
  constructor(base: BaseModel, options: AdapterPoolOptions = {}) {
    this.base = base;
    this.#options = resolvePoolOptions(base, options);
    this.baseName = this.#options.baseName;
    this.#model = new SharedModel(base, options);
    this.#batches = new BatchRouter(this.#options.maxBatch, () => this.#model.current);
  }

  /** Model runs of the pool's decode batches so far (prefills and batched steps), added up. */
  get batchStats(): Readonly<SchedulerStats> {
    return this.#batches.stats;
  }

  /** The tokenizer generation uses (it also renders chat prompts). */
  get tokenizer(): TokenizerLike {
    return this.#options.tokenizer;
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
    for (const entry of this.#entries.values()) bytes += entry.bytes;
    const { maxAdapters, maxBytes, maxActive } = this.#options;
    return { adapters: this.#entries.size, bytes, active: this.#active, maxAdapters, maxBytes, maxActive };
  }

  /**
   * Loads an adapter under a name. The same name and location while it is
   * loading or loaded joins that load (`created: false`); the same name with
   * another location is a conflict. Evicts least recently used idle
   * adapters to make room, only once the new one has loaded. Any
   * {@linkcode AdapterLocation}: a folder, a Hub repo, an http(s) URL
   * (`{ kind: "url", url }`) or a `FileSource` (`{ kind: "source", source }`).
   */
  async load(name: string, location: AdapterLocation): Promise<{ info: AdapterInfo; created: boolean }> {
    if (name === this.baseName) throw new PoolError("conflict", `${name} is the name of the base model`);
    const existing = this.#entries.get(name);
    if (existing) {
      if (!sameLocation(existing.location, location)) {
        throw new PoolError(
          "conflict",
          `adapter ${name} is already loaded from ${describeLocation(existing.location)}; delete it first`,
        );
      }
      await existing.ready;
      return { info: this.#info(existing), created: false };
    }
    if (this.#evictionFor(undefined, 0) === undefined) {
      throw new PoolError(
        "capacity",
        `cannot load ${name}: ${this.#options.maxAdapters} adapter(s) are held and every one is in use or loading`,
      );
    }
    const entry: Entry = {
      name,
      location,
      status: "loading",
      ready: Promise.resolve() as unknown as Promise<ModelAdapter>,
      bytes: 0,
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
      this.#drainingBytes += entry.bytes;
      return;
    }
    await this.#release(entry.adapter!);
  }

  /**
   * Takes the base (its name) or an adapter for one generation, waiting for
   * an adapter still loading. An adapter in use is never evicted.
   */
  async acquire(model: string): Promise<Lease> {
    if (this.#active >= this.#options.maxActive) {
      throw new PoolError(
        "busy",
        `the server is busy: ${this.#options.maxActive} generations are running; retry later`,
      );
    }
    if (model === this.baseName) {
      this.#active++;
      return makeLease(model, this.base, null, () => this.#active--);
    }
    const entry = this.#entries.get(model);
    if (!entry) throw new PoolError("not_found", `no model named ${model}`);
    this.#active++; // counted while waiting for a load too
    entry.inUse++;
    this.#touch(entry);
    let adapter: ModelAdapter;
    try {
      adapter = await entry.ready;
    } catch (cause) {
      this.#active--;
      entry.inUse--;
      throw new PoolError("not_found", `adapter ${model} failed to load`, { cause });
    }
    return makeLease(model, adapter.model, adapter.key, () => this.#giveBack(entry));
  }

  /**
   * Generates with a model (the base's name or an adapter's), with the
   * pool's tokenizer and generation defaults; same contract as `stream` in
   * src/generate. Concurrent requests share decode steps where they can
   * (see `BatchRouter`; `maxBatch`), each with its own settings, stop
   * strings and stream, with the texts they give alone (greedy). The model
   * is released when the generator ends.
   */
  async *stream(
    model: string,
    prompt: Prompt,
    options: GenerateOptions,
  ): AsyncGenerator<string, GenerationResult, undefined> {
    using lease = await this.acquire(model);
    const tokenizer = this.#options.tokenizer;
    const settings = { generationConfig: this.#options.generationConfig, ...options };
    const seat = this.#batches.seatFor(lease);
    if (seat) return yield* seat.scheduler.stream(tokenizer, prompt, settings, seat.adapter);
    return yield* stream(lease.model, tokenizer, prompt, {
      ...settings,
      // Every adapter run names its adapter: which ones the shared model has active never matters.
      adapter: lease.adapter ?? undefined,
    });
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
        this.#drainingBytes += entry.bytes;
      }
    }
  }

  /**
   * Opens the files of a location being loaded (after the pool accepted the
   * load). Subclasses may override it to observe or redirect loads.
   */
  protected openAdapter(_name: string, location: AdapterLocation): Promise<FileSource> {
    return openLocation(location, this.#options.hub);
  }

  /** A lease of an adapter ended. */
  #giveBack(entry: Entry): void {
    this.#active--;
    entry.inUse--;
    if (entry.deleted && entry.inUse === 0) {
      this.#drainingBytes -= entry.bytes;
      void this.#release(entry.adapter!);
    }
  }

  async #loadEntry(entry: Entry): Promise<ModelAdapter> {
    const forget = () => {
      if (this.#entries.get(entry.name) === entry) this.#entries.delete(entry.name);
    };
    let adapter: ModelAdapter;
    try {
      const files = await this.openAdapter(entry.name, entry.location);
      adapter = await this.#model.load(files, this.#options.onWarning);
    } catch (error) {
      forget();
      throw error;
    }
    const refuse = async (error: PoolError): Promise<never> => {
      forget();
      await this.#release(adapter);
      throw error;
    };
    const { maxBytes } = this.#options;
    if (adapter.bytes > maxBytes) {
      return await refuse(
        new PoolError(
          "too_large",
          `adapter ${entry.name} needs ${adapter.bytes} bytes, more than the pool's limit of ${maxBytes}`,
        ),
      );
    }
    const victims = this.#evictionFor(entry, adapter.bytes);
    if (victims === undefined) {
      return await refuse(
        new PoolError("capacity", `no room for adapter ${entry.name}: every other adapter is in use or loading`),
      );
    }
    for (const victim of victims) this.#entries.delete(victim.name);
    entry.adapter = adapter;
    entry.bytes = adapter.bytes;
    entry.status = "ready";
    entry.loadedAt = Date.now();
    this.#touch(entry);
    for (const victim of victims) await this.#release(victim.adapter!);
    return adapter;
  }

  /** The idle adapters to evict so that `entry` (or one more adapter) of `bytes` fits; undefined if impossible. */
  #evictionFor(entry: Entry | undefined, bytes: number): Entry[] | undefined {
    const others = [...this.#entries.values()].filter((other) => other !== entry);
    return planEviction(others, bytes, {
      maxCount: this.#options.maxAdapters,
      maxBytes: this.#options.maxBytes,
      drainingBytes: this.#drainingBytes,
    });
  }

  #touch(entry: Entry): void {
    entry.tick = ++this.#tick;
    entry.lastUsedAt = Date.now();
  }

  async #release(adapter: ModelAdapter): Promise<void> {
    try {
      await this.#model.unload(adapter);
    } catch (error) {
      this.#options.onWarning(`releasing an adapter failed: ${(error as Error).message}`);
    }
  }

  #info(entry: Entry): AdapterInfo {
    return {
      name: entry.name,
      location: entry.location,
      status: entry.status,
      bytes: entry.bytes,
      inUse: entry.inUse,
      loadedAt: entry.loadedAt,
      lastUsedAt: entry.lastUsedAt,
    };
  }
}

/**
 * {@linkcode WeightStore}: a base model's weight bytes (its external data
 * files, and the bytes of an ONNX file whose weights were inline) on the
 * JavaScript side. Once a session holds the weights, the JavaScript copy is
 * dropped between uses and read again from the model's files when a new
 * session or a weight read needs it, so a loaded model costs one copy of
 * its weights (onnxruntime's), not two. Bytes of local files are read range
 * by range (`storage/range_bytes.ts`): they hold nothing and are kept.
 * @module
 */

/**
 * Weight bytes by external data location, held while needed.
 *
 * @example
 * ```ts
 * import { WeightStore } from "./weight_store.ts";
 * const store = new WeightStore(new Map([["model.onnx_data", new Uint8Array(8)]]), async () => new Map());
 * await store.hold(async () => console.log(store.data.size)); // 1
 * store.handed(); // a session holds them now: the copy goes
 * ```
 */
export class WeightStore {
  #data?: ReadonlyMap<string, Uint8Array>;
  #loading?: Promise<ReadonlyMap<string, Uint8Array>>;
  #holds = 0;
  /** Kept until a session holds the weights; always, when they cannot be read again. */
  #pinned = true;
  /** Kept for good ({@linkcode WeightStore.pin}). */
  #kept = false;
  readonly #reload?: () => Promise<ReadonlyMap<string, Uint8Array>>;

  /** `data` as loaded; `reload` reads them again (absent: the copy is the only one and is never dropped). */
  constructor(data: ReadonlyMap<string, Uint8Array>, reload?: () => Promise<ReadonlyMap<string, Uint8Array>>) {
    this.#data = data;
    this.#reload = reload;
  }

  /** Whether the JavaScript copy is there now. */
  get loaded(): boolean {
    return this.#data !== undefined;
  }

  /** The bytes; only inside {@linkcode WeightStore.hold} once a session holds them. */
  get data(): ReadonlyMap<string, Uint8Array> {
    if (!this.#data) throw new Error("internal: base weights read outside a hold after a session took them");
    return this.#data;
  }

  /** Runs `task` with the bytes loaded (read again if they were dropped), dropping them after when unpinned. */
  async hold<T>(task: () => T | Promise<T>): Promise<T> {
    this.#holds++;
    try {
      if (!this.#data) {
        this.#loading ??= this.#reload!().finally(() => (this.#loading = undefined));
        this.#data = await this.#loading;
      }
      return await task();
    } finally {
      this.#holds--;
      this.#dropIfIdle();
    }
  }

  /** A session holds the weights now: the copy may go once no hold needs it. */
  handed(): void {
    if (!this.#reload) return;
    this.#pinned = false;
    this.#dropIfIdle();
  }

  /** Keeps the copy from now on (for users that read weights at any time, such as training). */
  pin(): void {
    this.#kept = true;
  }

  #dropIfIdle(): void {
    if (this.#holds === 0 && !this.#pinned && !this.#kept) this.#data = undefined;
  }
}

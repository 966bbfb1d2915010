/**
 * Stop strings over streamed text. Text that might be the start of a stop
 * string is held back until it is known not to be one, so a stop string is
 * never emitted, not even in part, and the emitted pieces are the same
 * however the text arrives.
 * @module
 */

/** What {@linkcode StopStringFilter.push} lets through. */
export interface FilterResult {
  /** Text that is safe to emit now. */
  readonly text: string;
  /** Whether a stop string was found (nothing more will be emitted). */
  readonly stopped: boolean;
}

/**
 * Filters streamed text, cutting it at the first stop string.
 *
 * @example
 * ```ts
 * import { StopStringFilter } from "./stop_strings.ts";
 * const filter = new StopStringFilter(["\n\n"]);
 * filter.push("Hello\n");  // { text: "Hello", stopped: false }  ("\n" held back)
 * filter.push("\nBye");    // { text: "", stopped: true }
 * ```
 */
export class StopStringFilter {
  readonly #stops: readonly string[];
  #held = "";
  #stopped = false;

  /**
   * Creates a filter for the given stop strings.
   * @param stops Non-empty stop strings.
   */
  constructor(stops: readonly string[]) {
    this.#stops = stops;
  }

  /** Whether a stop string has been seen. */
  get stopped(): boolean {
    return this.#stopped;
  }

  /** Adds text; returns what can be emitted. */
  push(piece: string): FilterResult {
    if (this.#stopped) return { text: "", stopped: true };
    const text = this.#held + piece;
    let cut = -1;
    for (const stop of this.#stops) {
      const at = text.indexOf(stop);
      if (at >= 0 && (cut < 0 || at < cut)) cut = at;
    }
    if (cut >= 0) {
      this.#stopped = true;
      this.#held = "";
      return { text: text.slice(0, cut), stopped: true };
    }
    const keep = this.#heldLength(text);
    this.#held = text.slice(text.length - keep);
    return { text: text.slice(0, text.length - keep), stopped: false };
  }

  /** Ends the text: whatever was held back is not a stop string after all. */
  flush(): string {
    const rest = this.#stopped ? "" : this.#held;
    this.#held = "";
    return rest;
  }

  /** Length of the longest suffix of `text` that is a proper prefix of a stop string. */
  #heldLength(text: string): number {
    let best = 0;
    for (const stop of this.#stops) {
      for (let n = Math.min(stop.length - 1, text.length); n > best; n--) {
        if (text.endsWith(stop.slice(0, n))) {
          best = n;
          break;
        }
      }
    }
    return best;
  }
}

/**
 * Test support for mixed-adapter batches: int64 feeds stacked along the
 * batch dim, and real-fixture expectations cut into rows and stacked again.
 * @module
 */
import assert from "node:assert/strict";
import { type Feeds, Tensor } from "../../mod.ts";
import type { RealExpected } from "./real_fixtures.ts";

/** The int64 feeds of several batches stacked along the batch dim (each name with one row shape). */
export function concatRows(parts: readonly Feeds[]): Feeds {
  const out: Feeds = {};
  for (const name of Object.keys(parts[0])) {
    const tensors = parts.map((p) => p[name]);
    const dims = [...tensors[0].dims];
    assert.ok(tensors.every((t) => t.dims.slice(1).join() === dims.slice(1).join()), `${name}: same row shape`);
    dims[0] = tensors.reduce((n, t) => n + t.dims[0], 0);
    const data = new BigInt64Array(tensors.reduce((n, t) => n + t.size, 0));
    let at = 0;
    for (const t of tensors) {
      data.set(t.data as BigInt64Array, at);
      at += t.size;
    }
    out[name] = new Tensor("int64", data, dims);
  }
  return out;
}

/** Row `row` of a `[batch, ...]` expectation, as a one-row expectation. */
export function rowOf(e: RealExpected, row: number): RealExpected {
  const feeds: Feeds = {};
  for (const [name, t] of Object.entries(e.feeds)) {
    const per = t.size / t.dims[0];
    feeds[name] = new Tensor("int64", (t.data as BigInt64Array).slice(row * per, (row + 1) * per), [
      1,
      ...t.dims.slice(1),
    ]);
  }
  const per = e.logits.length / e.dims[0];
  const maskPer = e.mask.length / e.dims[0];
  return {
    feeds,
    mask: e.mask.slice(row * maskPer, (row + 1) * maskPer),
    logits: e.logits.slice(row * per, (row + 1) * per),
    dims: [1, ...e.dims.slice(1)],
  };
}

/** A batch whose row `i` is row `i` of `parts[i]`. */
export function batchOf(parts: readonly RealExpected[]): RealExpected {
  const rows = parts.map(rowOf);
  const cat = (xs: Float32Array[]) => Float32Array.from(xs.flatMap((x) => [...x]));
  return {
    feeds: concatRows(rows.map((r) => r.feeds)),
    mask: BigInt64Array.from(rows.flatMap((r) => [...r.mask])),
    logits: cat(rows.map((r) => r.logits)),
    dims: [rows.length, ...rows[0].dims.slice(1)],
  };
}

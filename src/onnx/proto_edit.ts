/**
 * Editing bufbuild messages without losing their defaults. Decoded proto2
 * messages keep unset fields' defaults on their prototype, so an object
 * spread (`{ ...node, input }`) silently drops them (`node.domain` becomes
 * undefined). Rebuilding through `create` keeps them; untouched nested
 * messages are shared, not copied.
 * @module
 */
import { create } from "../deps/onnx_proto.ts";

/**
 * A copy of `message` with `changes` applied, defaults intact.
 *
 * @example
 * ```ts
 * import { edited } from "./proto_edit.ts";
 * import { NodeProtoSchema } from "../deps/onnx_proto.ts";
 * import type { NodeProto } from "../deps/onnx_proto.ts";
 * declare const node: NodeProto;
 * const rewired = edited(NodeProtoSchema, node, { input: ["x", "w_copy"] });
 * console.log(rewired.input);
 * ```
 */
export function edited<M extends { $typeName: string }>(
  schema: { readonly typeName: string },
  message: M,
  changes: Partial<Omit<M, "$typeName">>,
): M {
  const { $typeName: _ignored, ...fields } = message;
  // deno-lint-ignore no-explicit-any
  return create(schema as any, { ...fields, ...changes }) as unknown as M;
}

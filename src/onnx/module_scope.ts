/**
 * Which PyTorch module an ONNX node belongs to, by exporter convention:
 *
 * - torch.onnx dynamo exports name nodes `node_linear_3`; the module path is
 *   only in the node's `metadata_props`: `pkg.torch.onnx.name_scopes` (a
 *   Python list literal, `['', 'model', 'model.layers.0', ...,
 *   'model.layers.0.self_attn.q_proj', 'linear']`, the last entry being the
 *   op) with the classes in `pkg.torch.onnx.class_hierarchy`, or the same
 *   as one `namespace` string (`path: class/path: class/.../op: aten.op`);
 * - TorchScript exports scope the node name:
 *   `/model/layers.0/self_attn/q_proj/MatMul`.
 * @module
 */
import type { NodeProto } from "../deps/onnx_proto.ts";

/**
 * A node's module and, where the exporter recorded it, that module's class.
 *
 * @example
 * ```ts
 * import type { NodeScope } from "./module_scope.ts";
 * const q: NodeScope = {
 *   module: "model.layers.0.self_attn.q_proj",
 *   className: "torch.nn.modules.linear.Linear",
 *   path: [{ module: "model" }, { module: "model.layers.0.self_attn.q_proj", className: "torch.nn.modules.linear.Linear" }],
 * };
 * ```
 */
export interface NodeScope {
  module: string;
  className?: string;
  /** Every enclosing module, outermost first, with classes where known (the node's own module last). */
  path: Array<{ module: string; className?: string }>;
}

/** The string items of a Python list literal (`['a', "b"]`). */
function pythonStrings(literal: string): string[] | undefined {
  const s = literal.trim();
  if (!s.startsWith("[") || !s.endsWith("]")) return undefined;
  const items: string[] = [];
  for (const m of s.slice(1, -1).matchAll(/'((?:[^'\\]|\\.)*)'|"((?:[^"\\]|\\.)*)"/g)) {
    items.push((m[1] ?? m[2]).replace(/\\(.)/g, "$1"));
  }
  return items;
}

/**
 * Name scopes are cumulative in current PyTorch (`model`, `model.layers.0`)
 * and were local names in earlier ones (`model`, `layers.0`): build full
 * paths either way.
 */
function fullPaths(scopes: readonly string[]): string[] {
  const out: string[] = [];
  for (const scope of scopes) {
    if (scope === "") continue;
    const parent = out[out.length - 1];
    out.push(parent === undefined || scope.startsWith(`${parent}.`) ? scope : `${parent}.${scope}`);
  }
  return out;
}

function fromMetadata(node: NodeProto): NodeScope | undefined {
  const meta = new Map(node.metadataProps.map((p) => [p.key, p.value]));
  const scopes = meta.get("pkg.torch.onnx.name_scopes");
  if (scopes !== undefined) {
    const names = pythonStrings(scopes);
    if (names && names.length >= 2) {
      const classes = pythonStrings(meta.get("pkg.torch.onnx.class_hierarchy") ?? "") ?? [];
      // The last scope is the op itself (`linear`, `embedding`); the leading '' is the root.
      const modules = names.slice(0, -1);
      const paths = fullPaths(modules);
      // class_hierarchy has one class per scope, the root's included.
      const rootless = classes.length === names.length ? classes.slice(1, -1) : [];
      const path = paths.map((module, i) => ({ module, className: rootless[i] }));
      if (path.length > 0) return { ...path[path.length - 1], path };
    }
  }
  const namespace = meta.get("namespace");
  if (namespace !== undefined) {
    // ": Root/model: LlamaModel/model.layers.0: LlamaDecoderLayer/.../linear: aten.linear.default"
    const segments = namespace.split("/").slice(1, -1).map((seg) => {
      const colon = seg.indexOf(": ");
      return colon < 0 ? { module: seg } : { module: seg.slice(0, colon), className: seg.slice(colon + 2) };
    }).filter((s) => s.module !== "");
    const paths = fullPaths(segments.map((s) => s.module));
    const path = paths.map((module, i) => ({ module, className: segments[i].className }));
    if (path.length > 0) return { ...path[path.length - 1], path };
  }
  return undefined;
}

function fromNodeName(name: string): NodeScope | undefined {
  if (!name.startsWith("/")) return undefined;
  const parts = name.split("/").filter((p) => p.length > 0).slice(0, -1);
  if (parts.length === 0) return undefined;
  const path = parts.map((_, i) => ({ module: parts.slice(0, i + 1).join(".") }));
  return { ...path[path.length - 1], path };
}

/**
 * The PyTorch module a node was exported from, or undefined when the node
 * carries no scope (a generic name and no metadata).
 *
 * @example
 * ```ts
 * import { create, NodeProtoSchema } from "../deps/onnx_proto.ts";
 * import { nodeScope } from "./module_scope.ts";
 * nodeScope(create(NodeProtoSchema, { name: "/model/layers.0/self_attn/q_proj/MatMul" }))?.module;
 * // "model.layers.0.self_attn.q_proj"
 * ```
 */
export function nodeScope(node: NodeProto): NodeScope | undefined {
  return fromMetadata(node) ?? fromNodeName(node.name);
}

/** The last component of a dotted class path (`torch.nn.modules.linear.Linear` -> `Linear`). */
function shortClass(className: string): string {
  return className.slice(className.lastIndexOf(".") + 1);
}

/**
 * Is a recorded PyTorch class one PEFT's LoRA can wrap (`_create_new_module`:
 * `nn.Linear`, `nn.Embedding`, `nn.Conv1d/2d/3d`, transformers' `Conv1D`,
 * `nn.MultiheadAttention`)? Unknown (unrecorded) classes answer undefined.
 *
 * @example
 * ```ts
 * import { loraSupportsClass } from "./module_scope.ts";
 * loraSupportsClass("torch.nn.modules.linear.Linear"); // true
 * loraSupportsClass("transformers.models.llama.modeling_llama.LlamaRMSNorm"); // false
 * ```
 */
export function loraSupportsClass(className: string | undefined): boolean | undefined {
  if (className === undefined) return undefined;
  return ["Linear", "Embedding", "Conv1d", "Conv2d", "Conv3d", "Conv1D", "MultiheadAttention"].includes(
    shortClass(className),
  );
}

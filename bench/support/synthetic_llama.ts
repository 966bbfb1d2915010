/**
 * A Llama-shaped ONNX base and PEFT LoRA adapters for it, built in memory
 * from a seeded PRNG (same bytes every run), for benches that need a base
 * larger than the test fixtures.
 *
 * The graph is a stack of HF-scoped projections (`/model/layers.{i}/self_attn/q_proj/MatMul`
 * reading `[in, out]` float initializers) joined by cheap element-wise ops:
 *
 *     h = Gather(embed, input_ids)
 *     per layer:  x = LN(h); a = q(x) * sigmoid(k(x)) + v(x); h = h + o(a)
 *                 x = LN(h); h = h + down(silu(gate(x)) * up(x))
 *     logits = lm_head(LN(h))
 *
 * There is no real attention: one run with seq = 1 stands for a decode step.
 * @module
 */
import {
  create,
  GraphProtoSchema,
  ModelProtoSchema,
  type NodeProto,
  type TensorProto,
  TensorProto_DataType,
} from "../../src/deps/onnx_proto.ts";
import { makeNode, rawTensor, tensorValueInfo } from "../../src/onnx/graph_parts.ts";
import { encodeModel } from "../../src/onnx/model_file.ts";
import { serializeSafetensors, type TensorInput } from "../../src/safetensors/mod.ts";
import { memorySource } from "../../src/storage/memory.ts";
import type { FileSource } from "../../src/storage/file_source.ts";

/** Sizes of the synthetic model. */
export interface LlamaShape {
  vocab: number;
  hidden: number;
  intermediate: number;
  layers: number;
}

/** The seven linear modules of a Llama layer, with their `[in, out]` sizes. */
export function layerProjections(s: LlamaShape): [scope: string, name: string, inF: number, outF: number][] {
  const h = s.hidden, m = s.intermediate;
  return [
    ["self_attn", "q_proj", h, h],
    ["self_attn", "k_proj", h, h],
    ["self_attn", "v_proj", h, h],
    ["self_attn", "o_proj", h, h],
    ["mlp", "gate_proj", h, m],
    ["mlp", "up_proj", h, m],
    ["mlp", "down_proj", m, h],
  ];
}

/** Uniform floats in [-scale, scale) from a xorshift32 stream seeded by `seed`. */
export function seededFloats(seed: number, length: number, scale: number): Float32Array {
  let x = (seed * 2654435761) >>> 0 || 1;
  const out = new Float32Array(length);
  for (let i = 0; i < length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    out[i] = (x / 2 ** 32 * 2 - 1) * scale;
  }
  return out;
}

const F = TensorProto_DataType.FLOAT;
const bytesOf = (a: Float32Array) => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);

/** The base's folder: `config.json` and `onnx/model.onnx` (opset 17, `input_ids` -> `logits`). */
export function syntheticLlama(s: LlamaShape, seed = 1): FileSource {
  const nodes: NodeProto[] = [];
  const inits: TensorProto[] = [];
  let nextSeed = seed * 1000;
  const weight = (name: string, dims: number[], scale: number) => {
    inits.push(rawTensor(name, F, dims, bytesOf(seededFloats(nextSeed++, dims[0] * (dims[1] ?? 1), scale))));
    return name;
  };
  const ones = rawTensor("norm.ones", F, [s.hidden], bytesOf(new Float32Array(s.hidden).fill(1)));
  inits.push(ones);
  const op = (type: string, input: string[], name: string, attrs = {}) => {
    nodes.push(makeNode(type, input, [`${name}/output_0`], name, attrs));
    return `${name}/output_0`;
  };
  const norm = (x: string, scope: string) =>
    op("LayerNormalization", [x, ones.name], `${scope}/LayerNormalization`, { axis: -1 });
  const linear = (x: string, scope: string, inF: number, outF: number) =>
    op("MatMul", [x, weight(`onnx::MatMul_${scope}`, [inF, outF], 1 / Math.sqrt(inF))], `${scope}/MatMul`);

  const embed = weight("model.embed_tokens.weight", [s.vocab, s.hidden], 1);
  let h = op("Gather", [embed, "input_ids"], "/model/embed_tokens/Gather", { axis: 0 });
  for (let i = 0; i < s.layers; i++) {
    const at = `/model/layers.${i}`;
    const proj = Object.fromEntries(
      layerProjections(s).map(([scope, name, inF, outF]) => [
        name,
        (x: string) => linear(x, `${at}/${scope}/${name}`, inF, outF),
      ]),
    );
    let x = norm(h, `${at}/input_layernorm`);
    const gate = op("Sigmoid", [proj.k_proj(x)], `${at}/self_attn/Sigmoid`);
    const mixed = op(
      "Add",
      [op("Mul", [proj.q_proj(x), gate], `${at}/self_attn/Mul`), proj.v_proj(x)],
      `${at}/self_attn/Add`,
    );
    h = op("Add", [h, proj.o_proj(mixed)], `${at}/attn_residual/Add`);
    x = norm(h, `${at}/post_attention_layernorm`);
    const g = proj.gate_proj(x);
    const silu = op("Mul", [g, op("Sigmoid", [g], `${at}/mlp/act_fn/Sigmoid`)], `${at}/mlp/act_fn/Mul`);
    const hidden = op("Mul", [silu, proj.up_proj(x)], `${at}/mlp/Mul`);
    h = op("Add", [h, proj.down_proj(hidden)], `${at}/mlp_residual/Add`);
  }
  const last = linear(norm(h, "/model/norm"), "/lm_head", s.hidden, s.vocab);
  nodes.push(makeNode("Identity", [last], ["logits"], "/logits/Identity"));

  const graph = create(GraphProtoSchema, {
    name: "synthetic-llama",
    node: nodes,
    initializer: inits,
    input: [tensorValueInfo("input_ids", TensorProto_DataType.INT64, [1, "sequence_length"])],
    output: [tensorValueInfo("logits", F, [1, "sequence_length", s.vocab])],
  });
  const model = create(ModelProtoSchema, {
    irVersion: 8n,
    producerName: "peft-edge bench",
    opsetImport: [{ domain: "", version: 17n }],
    graph,
  });
  const config = {
    model_type: "llama",
    architectures: ["LlamaForCausalLM"],
    vocab_size: s.vocab,
    hidden_size: s.hidden,
    intermediate_size: s.intermediate,
    num_hidden_layers: s.layers,
    tie_word_embeddings: false,
  };
  return memorySource("synthetic-llama", {
    "config.json": new TextEncoder().encode(JSON.stringify(config)),
    "onnx/model.onnx": encodeModel(model),
  });
}

/** A PEFT LoRA adapter folder on every linear module of every layer (non-zero B). */
export function syntheticLora(s: LlamaShape, r: number, loraAlpha: number, seed: number): FileSource {
  const tensors: Record<string, TensorInput> = {};
  let nextSeed = seed * 1000;
  for (let i = 0; i < s.layers; i++) {
    for (const [scope, name, inF, outF] of layerProjections(s)) {
      const key = `base_model.model.model.layers.${i}.${scope}.${name}`;
      tensors[`${key}.lora_A.weight`] = {
        dtype: "F32",
        shape: [r, inF],
        data: seededFloats(nextSeed++, r * inF, 1 / Math.sqrt(inF)),
      };
      tensors[`${key}.lora_B.weight`] = {
        dtype: "F32",
        shape: [outF, r],
        data: seededFloats(nextSeed++, outF * r, 0.05),
      };
    }
  }
  const config = {
    peft_type: "LORA",
    task_type: "CAUSAL_LM",
    base_model_name_or_path: "synthetic-llama",
    r,
    lora_alpha: loraAlpha,
    lora_dropout: 0,
    bias: "none",
    fan_in_fan_out: false,
    target_modules: layerProjections(s).map(([, name]) => name),
  };
  return memorySource(`synthetic-lora-${seed}`, {
    "adapter_config.json": new TextEncoder().encode(JSON.stringify(config)),
    "adapter_model.safetensors": serializeSafetensors(tensors),
  });
}

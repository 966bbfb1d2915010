import { test } from "node:test";
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { AdapterConfigError, UnsupportedError } from "../src/errors.ts";
import {
  alphaFor,
  compilePythonRegex,
  createTargetMatcher,
  expandAllLinear,
  getPatternKey,
  isAllLinear,
  isTargetModule,
  type LoraConfig,
  parseLoraConfig,
  rankFor,
  scalingFor,
} from "../src/config/mod.ts";
import { PROMPT_LEARNING_TYPES, SUPPORTED_PEFT_TYPES, TUNER_TYPES } from "../src/config/peft_types.ts";
import { isTunerType, TUNER_METHODS } from "../src/tuners/methods.ts";
import { isPromptLearningType } from "../src/tuners/prompt_learning/config.ts";

const quiet = { onWarning: () => {} };
const parse = (json: unknown, overrides?: Record<string, unknown>): LoraConfig =>
  parseLoraConfig(json, { ...quiet, overrides });

async function readText(path: string): Promise<string> {
  return await readFile(new URL(path, import.meta.url), "utf8");
}

// ---------------------------------------------------------------------------
// Real adapter configs
// ---------------------------------------------------------------------------

const FIXTURES: [string, Partial<Record<keyof LoraConfig, unknown>>][] = [
  ["./fixtures/llama-tiny-lora-qv/adapter_config.json", { r: 8, loraAlpha: 16, targetModules: ["q_proj", "v_proj"] }],
  ["./fixtures/llama-tiny-dora-qv/adapter_config.json", { r: 8, loraAlpha: 16, useDora: true }],
  ["./fixtures/llama-tiny-lora-embed/adapter_config.json", {
    r: 4,
    loraAlpha: 4,
    targetModules: ["embed_tokens", "q_proj"],
  }],
  ["./fixtures/llama-tiny-lora-all-rslora-f16/adapter_config.json", { r: 4, loraAlpha: 8, useRslora: true }],
  ["./fixtures/llama-tiny-lora-mlp-b/adapter_config.json", {
    r: 2,
    loraAlpha: 32,
    targetModules: ["up_proj", "down_proj"],
  }],
  ["./fixtures/gpt2-tiny-lora-c_attn/adapter_config.json", { r: 8, loraAlpha: 16, fanInFanOut: true }],
  ["../examples/demo/byte-llama-python-lora/adapter_config.json", { r: 8, loraAlpha: 16, loraDropout: 0 }],
];

for (const [path, expected] of FIXTURES) {
  test(`fixture parses without warnings: ${path}`, async () => {
    const text = await readText(path);
    const warnings: string[] = [];
    for (const input of [text, JSON.parse(text)]) {
      const config = parseLoraConfig(input, { file: path, onWarning: (m) => warnings.push(m) });
      assert.equal(config.peftType, "LORA");
      assert.equal(config.taskType, "CAUSAL_LM");
      assert.equal(config.bias, "none");
      assert.equal(config.initLoraWeights, true);
      assert.equal(config.inferenceMode, true);
      assert.deepEqual(config.raw, JSON.parse(text));
      for (const [field, value] of Object.entries(expected)) {
        assert.deepEqual(config[field as keyof LoraConfig], value, field);
      }
    }
    assert.deepEqual(warnings, []);
  });
}

test("fixture scaling: alpha/r, and alpha/sqrt(r) with use_rslora", async () => {
  const qv = parse(await readText("./fixtures/llama-tiny-lora-qv/adapter_config.json"));
  assert.equal(scalingFor(qv, "model.layers.0.self_attn.q_proj"), 2);
  const rs = parse(await readText("./fixtures/llama-tiny-lora-all-rslora-f16/adapter_config.json"));
  assert.equal(scalingFor(rs, "model.layers.1.mlp.down_proj"), 8 / Math.sqrt(4));
  const mlp = parse(await readText("./fixtures/llama-tiny-lora-mlp-b/adapter_config.json"));
  assert.equal(scalingFor(mlp, "model.layers.0.mlp.up_proj"), 16);
});

test("fixture targets: llama q/v, embed, gpt2 c_attn", async () => {
  const qv = createTargetMatcher(parse(await readText("./fixtures/llama-tiny-lora-qv/adapter_config.json")));
  const llama = [0, 1].flatMap((i) =>
    ["q_proj", "k_proj", "v_proj", "o_proj"].map((p) => `model.layers.${i}.self_attn.${p}`)
      .concat(["gate_proj", "up_proj", "down_proj"].map((p) => `model.layers.${i}.mlp.${p}`))
  ).concat(["model.embed_tokens", "lm_head", "model.norm"]);
  assert.deepEqual(llama.filter(qv), [
    "model.layers.0.self_attn.q_proj",
    "model.layers.0.self_attn.v_proj",
    "model.layers.1.self_attn.q_proj",
    "model.layers.1.self_attn.v_proj",
  ]);
  const embed = createTargetMatcher(parse(await readText("./fixtures/llama-tiny-lora-embed/adapter_config.json")));
  assert.deepEqual(llama.filter(embed), [
    "model.layers.0.self_attn.q_proj",
    "model.layers.1.self_attn.q_proj",
    "model.embed_tokens",
  ]);
  const gpt2 = createTargetMatcher(parse(await readText("./fixtures/gpt2-tiny-lora-c_attn/adapter_config.json")));
  const gpt2Modules = [
    "transformer.h.0.attn.c_attn",
    "transformer.h.0.attn.c_proj",
    "transformer.h.1.mlp.c_fc",
    "transformer.h.1.attn.c_attn",
  ];
  assert.deepEqual(gpt2Modules.filter(gpt2), ["transformer.h.0.attn.c_attn", "transformer.h.1.attn.c_attn"]);
});

// ---------------------------------------------------------------------------
// Defaults, unknown fields, overrides
// ---------------------------------------------------------------------------

test("defaults are PEFT's for a minimal config", () => {
  for (const minimal of [{ peft_type: "LORA" }, {}, "{}"]) {
    const c = parse(minimal);
    assert.equal(c.peftType, "LORA");
    assert.equal(c.taskType, null);
    assert.equal(c.baseModelNameOrPath, null);
    assert.equal(c.revision, null);
    assert.equal(c.inferenceMode, false);
    assert.equal(c.r, 8);
    assert.equal(c.loraAlpha, 8);
    assert.equal(c.loraDropout, 0);
    assert.equal(c.targetModules, null);
    assert.equal(c.excludeModules, null);
    assert.equal(c.layersToTransform, null);
    assert.equal(c.layersPattern, null);
    assert.equal(c.rankPattern.size, 0);
    assert.equal(c.alphaPattern.size, 0);
    assert.equal(c.useRslora, false);
    assert.equal(c.useDora, false);
    assert.equal(c.fanInFanOut, false);
    assert.equal(c.bias, "none");
    assert.equal(c.loraBias, false);
    assert.equal(c.modulesToSave, null);
    assert.equal(c.initLoraWeights, true);
    assert.equal(c.layerReplication, null);
    assert.equal(c.trainableTokenIndices, null);
    assert.equal(c.targetParameters, null);
    assert.ok(Object.isFrozen(c));
  }
});

test("null for PEFT's Optional/bool fields reads as PEFT reads None", () => {
  const c = parse({
    use_dora: null,
    rank_pattern: null,
    alpha_pattern: null,
    init_lora_weights: null,
    task_type: null,
  });
  assert.equal(c.useDora, false);
  assert.equal(c.rankPattern.size, 0);
  assert.equal(c.initLoraWeights, false);
});

test("unknown fields: one warning naming all of them, values ignored", () => {
  const warnings: string[] = [];
  const c = parseLoraConfig(
    { peft_type: "LORA", r: 4, future_knob: 1, another_one: "x", loraAlpha: 99 },
    { file: "adapter_config.json", onWarning: (m) => warnings.push(m) },
  );
  assert.equal(warnings.length, 1);
  assert.match(warnings[0], /adapter_config\.json/);
  assert.match(warnings[0], /future_knob/);
  assert.match(warnings[0], /another_one/);
  assert.match(warnings[0], /loraAlpha/);
  assert.equal(c.r, 4);
  assert.equal(c.loraAlpha, 8);
});

test("PEFT v0.19 field names are known (no warning)", () => {
  const warnings: string[] = [];
  parseLoraConfig(
    {
      peft_version: "0.19.0",
      auto_mapping: null,
      megatron_core: "megatron.core",
      lora_ga_config: null,
      use_bdlora: null,
      arrow_config: null,
      ensure_weight_tying: false,
      use_qalora: false,
      qalora_group_size: 16,
      alora_invocation_tokens: null,
      target_parameters: null,
      runtime_config: {},
    },
    { onWarning: (m) => warnings.push(m) },
  );
  assert.deepEqual(warnings, []);
});

test("PEFT's 'ignored sub-config' warnings", () => {
  const warnings: string[] = [];
  parseLoraConfig({ loftq_config: { loftq_bits: 4 }, eva_config: {}, corda_config: {} }, {
    onWarning: (m) => warnings.push(m),
  });
  assert.equal(warnings.length, 3);
  assert.match(warnings.join("\n"), /loftq_config.*eva_config.*corda_config/s);
});

test("overrides: camelCase or snake_case, applied before validation; raw is untouched", () => {
  const json = { peft_type: "LORA", r: 8, lora_alpha: 16, target_modules: ["q_proj"] };
  const c = parse(json, { loraAlpha: 32, use_rslora: true, rankPattern: new Map([["q_proj", 4]]) });
  assert.equal(c.loraAlpha, 32);
  assert.equal(c.useRslora, true);
  assert.equal(rankFor(c, "model.layers.0.self_attn.q_proj"), 4);
  assert.equal(c.raw, json);
  assert.equal((c.raw as Record<string, unknown>)["lora_alpha"], 16);
  assert.throws(() => parse(json, { loraAlpa: 1 }), (e) => e instanceof AdapterConfigError && e.key === "loraAlpa");
  assert.throws(() => parse(json, { r: 0 }), (e) => e instanceof AdapterConfigError && e.key === "r");
});

// ---------------------------------------------------------------------------
// Invalid configs: field types and PEFT's ValueErrors
// ---------------------------------------------------------------------------

const INVALID: [string, unknown, string][] = [
  ["not an object", [1, 2], ""],
  ["not JSON", "{r: 8", ""],
  ["r = 0", { r: 0 }, "r"],
  ["r negative", { r: -4 }, "r"],
  ["r not an integer", { r: 8.5 }, "r"],
  ["r a string", { r: "8" }, "r"],
  ["lora_alpha a string", { lora_alpha: "16" }, "lora_alpha"],
  ["lora_alpha null", { lora_alpha: null }, "lora_alpha"],
  ["lora_alpha boolean", { lora_alpha: true }, "lora_alpha"],
  ["lora_dropout > 1 (nn.Dropout)", { lora_dropout: 1.5 }, "lora_dropout"],
  ["task_type unknown (PeftConfig.__post_init__)", { task_type: "CAUSAL" }, "task_type"],
  ["bias unknown", { bias: "some" }, "bias"],
  ["bias null", { bias: null }, "bias"],
  ["use_dora not a bool", { use_dora: "yes" }, "use_dora"],
  ["target_modules a number", { target_modules: 3 }, "target_modules"],
  ["target_modules with a non-string", { target_modules: ["q_proj", 1] }, "target_modules"],
  ["exclude_modules an object", { exclude_modules: { q: 1 } }, "exclude_modules"],
  ["target_modules an invalid regex", { target_modules: "(q_proj" }, "target_modules"],
  ["exclude_modules an invalid regex", { target_modules: ["q"], exclude_modules: "*x" }, "exclude_modules"],
  ["layers_to_transform floats", { target_modules: ["q"], layers_to_transform: [0.5] }, "layers_to_transform"],
  ["layers_pattern a number", { target_modules: ["q"], layers_to_transform: [0], layers_pattern: 1 }, "layers_pattern"],
  [
    "layers_pattern an invalid regex",
    { target_modules: ["q"], layers_to_transform: [0], layers_pattern: "(" },
    "layers_pattern",
  ],
  ["rank_pattern a list", { rank_pattern: [["q", 4]] }, "rank_pattern"],
  ["rank_pattern value 0", { rank_pattern: { q_proj: 0 } }, "rank_pattern"],
  ["rank_pattern value non-integer", { rank_pattern: { q_proj: 2.5 } }, "rank_pattern"],
  ["alpha_pattern value a string", { alpha_pattern: { q_proj: "32" } }, "alpha_pattern"],
  ["rank_pattern key an invalid regex", { rank_pattern: { "q_proj)": 4 } }, "rank_pattern"],
  ["modules_to_save a string", { modules_to_save: "lm_head" }, "modules_to_save"],
  ["init_lora_weights unknown string", { init_lora_weights: "kaiming" }, "init_lora_weights"],
  ["init_lora_weights a number", { init_lora_weights: 1 }, "init_lora_weights"],
  // LoraConfig.__post_init__
  [
    "layers_to_transform with regex target_modules",
    { target_modules: ".*q_proj", layers_to_transform: [0] },
    "layers_to_transform",
  ],
  [
    "layers_to_transform int with regex target_modules",
    { target_modules: ".*q_proj", layers_to_transform: 0 },
    "layers_to_transform",
  ],
  [
    "layers_pattern with regex target_modules",
    { target_modules: ".*q_proj", layers_pattern: "layers" },
    "layers_pattern",
  ],
  [
    "layers_pattern without layers_to_transform",
    { target_modules: ["q_proj"], layers_pattern: "layers" },
    "layers_pattern",
  ],
  ["layers_pattern with layers_to_transform [] (falsy)", {
    target_modules: ["q_proj"],
    layers_pattern: ["h"],
    layers_to_transform: [],
  }, "layers_pattern"],
  ["layers_pattern with layers_to_transform 0 (falsy in Python)", {
    target_modules: ["q_proj"],
    layers_pattern: "h",
    layers_to_transform: 0,
  }, "layers_pattern"],
  ["use_dora with megatron_config", { use_dora: true, megatron_config: { tensor_model_parallel_size: 2 } }, "use_dora"],
  ["init loftq without loftq_config", { init_lora_weights: "loftq", loftq_config: {} }, "loftq_config"],
  ["lora_bias with non-boolean init", { lora_bias: true, init_lora_weights: "gaussian" }, "lora_bias"],
  ["lora_bias with DoRA", { lora_bias: true, use_dora: true }, "lora_bias"],
  ["target_parameters a string (TypeError)", { target_parameters: "experts.down_proj" }, "target_parameters"],
  ["layer_replication malformed", { layer_replication: [[0, 4, 8]] }, "layer_replication"],
  ["alora_invocation_tokens malformed", { alora_invocation_tokens: "<|assistant|>" }, "alora_invocation_tokens"],
];

for (const [name, json, key] of INVALID) {
  test(`invalid config raises AdapterConfigError: ${name}`, () => {
    assert.throws(() => parseLoraConfig(json, { file: "cfg.json", ...quiet }), (e) => {
      assert.ok(e instanceof AdapterConfigError, `${e}`);
      assert.equal(e.file, "cfg.json");
      if (key) {
        assert.equal(e.key, key);
        assert.ok(e.message.includes(key), e.message);
      }
      return true;
    });
  });
}

test("PEFT-valid edge values are accepted", () => {
  // layers_to_transform alone (no pattern), int 0, negative dropout (nn.Identity), float alpha
  assert.equal(parse({ target_modules: ["q"], layers_to_transform: 0 }).layersToTransform, 0);
  assert.equal(parse({ lora_dropout: -0.1 }).loraDropout, -0.1);
  assert.equal(parse({ lora_alpha: 0.5 }).loraAlpha, 0.5);
  // empty layers_pattern is falsy: no layers_to_transform needed
  assert.equal(parse({ target_modules: ["q"], layers_pattern: [] }).layersPattern?.length, 0);
  assert.equal(parse({ target_modules: ["q"], layers_pattern: "" }).layersPattern, "");
  // lora_bias with init true/false
  assert.equal(parse({ lora_bias: true, init_lora_weights: false }).loraBias, true);
  // inits that only initialise the adapter (weights are then loaded)
  for (const init of ["gaussian", "eva", "orthogonal", false, true]) {
    assert.equal(parse({ init_lora_weights: init }).initLoraWeights, init);
  }
  // target_parameters [] is "not set"
  assert.deepEqual(parse({ target_modules: ["q"], target_parameters: [] }).targetParameters, []);
  // megatron_config {} is falsy in PEFT
  assert.equal(parse({ use_dora: true, megatron_config: {} }).useDora, true);
});

// ---------------------------------------------------------------------------
// peft_type and unsupported features
// ---------------------------------------------------------------------------

for (const peftType of ["NOT_A_METHOD", "lora", 3, "IA3", "PREFIX_TUNING", "ADALORA"]) {
  const loaded = typeof peftType === "string" && SUPPORTED_PEFT_TYPES.includes(peftType);
  test(
    `peft_type ${JSON.stringify(peftType)} raises UnsupportedError ${
      loaded ? "saying LoRA's parser reads LORA only" : "naming every supported type"
    }`,
    () => {
      const warnings: string[] = [];
      assert.throws(
        () => parseLoraConfig({ peft_type: peftType, num_virtual_tokens: 20 }, { onWarning: (m) => warnings.push(m) }),
        (e) => {
          assert.ok(e instanceof UnsupportedError);
          assert.equal(e.key, "peft_type");
          assert.ok(e.message.includes(JSON.stringify(peftType)), e.message);
          if (loaded) {
            assert.match(e.message, /is not a LoRA config; LoRA's parser reads peft_type LORA only/);
          } else {
            // The list is the one the loaders dispatch on: every tuner method and prompt-learning type.
            const listed = e.message.split("peft-edge supports: ")[1]?.split(", ");
            assert.deepEqual(listed, [...SUPPORTED_PEFT_TYPES]);
            for (const t of ["LORA", ...Object.keys(TUNER_METHODS), "PROMPT_TUNING", "P_TUNING", "PREFIX_TUNING"]) {
              assert.ok(listed!.includes(t), `${t} listed`);
            }
          }
          return true;
        },
      );
      assert.deepEqual(warnings, [], "no unknown-field noise for a non-LoRA config");
    },
  );
}

test("every listed tuner type has a method and every prompt-learning type is recognized", () => {
  assert.deepEqual(Object.keys(TUNER_METHODS).sort(), [...TUNER_TYPES].sort());
  for (const t of PROMPT_LEARNING_TYPES) assert.ok(isPromptLearningType(t), t);
  assert.ok(!isTunerType("LORA") && !isPromptLearningType("LORA"));
});

const UNSUPPORTED: [string, unknown, string][] = [
  ["layer_replication", { layer_replication: [[0, 4], [2, 5]] }, "layer_replication"],
  ["use_qalora", { use_qalora: true }, "use_qalora"],
  ["aLoRA with DoRA", { alora_invocation_tokens: [128, 9], use_dora: true }, "alora_invocation_tokens"],
  ["aLoRA with an empty invocation", { alora_invocation_tokens: [] }, "alora_invocation_tokens"],
  ["megatron", { megatron_config: { tensor_model_parallel_size: 2 } }, "megatron_config"],
  ["PiSSA init", { init_lora_weights: "pissa" }, "init_lora_weights"],
  ["fast PiSSA init", { init_lora_weights: "pissa_niter_16" }, "init_lora_weights"],
  ["OLoRA init", { init_lora_weights: "olora" }, "init_lora_weights"],
  ["CorDA init", { init_lora_weights: "corda" }, "init_lora_weights"],
  ["LoftQ init", { init_lora_weights: "loftq", loftq_config: { loftq_bits: 4 } }, "init_lora_weights"],
  ["bdlora", { use_bdlora: { blocks: 2 } }, "use_bdlora"],
  ["arrow", { arrow_config: { top_k: 2 } }, "arrow_config"],
  ["ensure_weight_tying", { ensure_weight_tying: true }, "ensure_weight_tying"],
];

test("alora_invocation_tokens is read (activated LoRA); PEFT warns off CAUSAL_LM", () => {
  const warnings: string[] = [];
  const c = parseLoraConfig({ alora_invocation_tokens: [128, 9] }, { onWarning: (m) => warnings.push(m) });
  assert.deepEqual(c.aloraInvocationTokens, [128, 9]);
  assert.ok(warnings.some((m) => m.includes("aLoRA is currently only supported for CAUSAL_LM task.")), `${warnings}`);
  const causal = parseLoraConfig({ task_type: "CAUSAL_LM", alora_invocation_tokens: [1] }, {
    onWarning: (m) => assert.fail(m),
  });
  assert.deepEqual(causal.aloraInvocationTokens, [1]);
  assert.equal(parseLoraConfig({}, { onWarning: () => {} }).aloraInvocationTokens, null);
});

for (const [name, json, key] of UNSUPPORTED) {
  test(`unsupported PEFT feature raises UnsupportedError: ${name}`, () => {
    assert.throws(() => parse(json), (e) => e instanceof UnsupportedError && e.key === key);
  });
}

test("regex constructs a linear-time engine cannot run raise AdapterConfigError naming the field and pattern", () => {
  const cases: [string, string][] = [
    ["target_modules", "(?>q)_proj"],
    ["target_modules", ".*_proj++"],
    ["exclude_modules", "(?=q).*_proj"],
    ["target_modules", ".*(?<!k)_proj"],
    ["exclude_modules", String.raw`(q)\1_proj`],
    ["target_modules", "(?P<x>q)(?P=x)_proj"],
  ];
  for (const [key, pattern] of cases) {
    assert.throws(
      () => parse({ [key]: pattern }),
      (e) =>
        e instanceof AdapterConfigError && e.key === key && e.message.includes(JSON.stringify(pattern)) &&
        /linear-time/.test(e.message),
      `${key}: ${pattern}`,
    );
  }
  for (const key of ["rank_pattern", "alpha_pattern"]) {
    assert.throws(
      () => parse({ target_modules: ["q_proj"], [key]: { "(?=q)q_proj": 4 } }),
      (e) => e instanceof AdapterConfigError && e.key === key && e.message.includes("(?=q)q_proj"),
      key,
    );
  }
});

test("catastrophic patterns in every regex field answer within a second (linear-time matching)", () => {
  // Each pattern backtracks exponentially in Python's re (and in JS RegExp) on these names.
  const long = "model.layers.0.self_attn." + "a".repeat(40);
  const names = [long, long + ".q_proj", "x".repeat(60), "model." + "a.".repeat(30) + "b"];
  const started = performance.now();
  const fromTargets = parse({ target_modules: "(.*)*#", exclude_modules: "(x+x+)+y" });
  const matches = createTargetMatcher(fromTargets);
  assert.deepEqual(names.filter(matches), []);
  const fromExclude = parse({ target_modules: ["q_proj"], exclude_modules: "(a|aa)+$#" });
  assert.deepEqual(names.filter(createTargetMatcher(fromExclude)), [long + ".q_proj"]);
  const patterns = parse({
    r: 8,
    lora_alpha: 16,
    target_modules: ["q_proj"],
    rank_pattern: { "(.*)*#": 4, "(a+)+b": 2 },
    alpha_pattern: { "((a.)*)*#": 3, "(.*a){20}#": 5 },
  });
  for (const name of names) {
    assert.equal(rankFor(patterns, name), 8);
    assert.equal(alphaFor(patterns, name), 16);
  }
  const layers = parse({ target_modules: ["b"], layers_to_transform: [0], layers_pattern: "(a.?)*" });
  assert.deepEqual(names.filter(createTargetMatcher(layers)), []);
  const elapsed = performance.now() - started;
  // A generous bound: this checks for a hang, not for speed.
  assert.ok(elapsed < 1000, `took ${elapsed} ms`);
});

// ---------------------------------------------------------------------------
// Target matching: PEFT's own table (tests/test_tuners_utils.py REGEX_TEST_CASES)
// key, target_modules, layers_to_transform, layers_pattern, expected
// ---------------------------------------------------------------------------

type Case = [string, string[] | string, number[] | number | null, string[] | string | null, boolean];
const PEFT_REGEX_TEST_CASES: Case[] = [
  ["", [], null, null, false],
  ["", ["foo"], null, null, false],
  ["foo", [], null, null, false],
  ["foo", ["foo"], null, null, true],
  ["foo", ["bar"], null, null, false],
  ["foo", ["foo", "bar"], null, null, true],
  ["foo", "foo", null, null, true],
  ["foo", ".*oo", null, null, true],
  ["foo", "fo.*", null, null, true],
  ["foo", ".*bar.*", null, null, false],
  ["foobar", ".*oba.*", null, null, true],
  ["foo.bar.1.baz", ["baz"], [1], ["bar"], true],
  ["foo.bar.1.baz", ["baz"], [0], ["bar"], false],
  ["foo.bar.1.baz", ["baz"], [2], ["bar"], false],
  ["foo.bar.10.baz", ["baz"], [0], ["bar"], false],
  ["foo.bar.10.baz", ["baz"], [1], ["bar"], false],
  ["foo.bar.1.baz", ["baz"], [0, 1, 2], ["bar"], true],
  ["foo.bar.1.baz", ["baz", "spam"], [1], ["bar"], true],
  ["foo.bar.1.baz", ["baz", "spam"], [0, 1, 2], ["bar"], true],
  ["foo.whatever.1.baz", ["baz"], [1], [], true],
  ["foo.whatever.1.baz", ["baz"], [0], [], false],
  ["foo.whatever.1.baz", ["baz"], [1], "", true],
  ["foo.whatever.1.baz", ["baz"], [0], "", false],
  ["foo.whatever.1.baz", ["baz"], [1], null, true],
  ["foo.whatever.1.baz", ["baz"], [0], null, false],
  ["transformer.h.1.attn.attention.q_proj.foo", ["q_proj"], null, [], false],
  ["transformer.h.1.attn.attention.q_proj", [], null, [], false],
  ["transformer.h.1.attn.attention.q_proj", ["q_proj"], null, [], true],
  ["transformer.h.1.attn.attention.q_proj", ["q_proj", "v_proj"], null, [], true],
  ["transformer.h.1.attn.attention.resid_dropout", ["q_proj", "v_proj"], null, [], false],
  ["transformer.h.1.attn.attention.q_proj", ["q_proj"], [1], ["h"], true],
  ["transformer.h.1.attn.attention.q_proj", ["q_proj"], [0], ["h"], false],
  ["transformer.h.1.attn.attention.q_proj", ["q_proj"], [2], ["h"], false],
  ["transformer.h.1.attn.attention.q_proj", ["q_proj"], [0, 1, 2], ["h"], true],
  ["transformer.h.1.attn.attention.q_proj", ["q_proj", "v_proj"], [0, 1, 2], ["h"], true],
  ["foo.bar.q_proj", ["q_proj"], null, [], true],
  ["foo.bar.1.baz", ["baz"], [1], ["foo"], false],
  ["foo.bar.1.baz", ["baz"], [1], ["baz"], false],
  ["bar.1.baz", ["baz"], [1], ["bar"], false],
  ["foo.bar.001.baz", ["baz"], [1], ["bar"], true],
  ["foo.bar.1.spam.2.baz", ["baz"], [1], ["bar"], true],
  ["foo.bar.2.spam.1.baz", ["baz"], [1], ["bar"], false],
  ["blocks.1.weight", ["weight"], [1], ["blocks"], false],
  ["blocks.1.bias", ["weight"], [1], ["blocks"], false],
  ["mlp.blocks.1.weight", ["weight"], [1], ["blocks"], true],
  ["mlp.blocks.1.bias", ["weight"], [1], ["blocks"], false],
];

for (const [key, targetModules, layersToTransform, layersPattern, expected] of PEFT_REGEX_TEST_CASES) {
  const label =
    `${JSON.stringify(key)} targets=${JSON.stringify(targetModules)} layers=${JSON.stringify(layersToTransform)} ` +
    `pattern=${JSON.stringify(layersPattern)}`;
  test(`PEFT REGEX_TEST_CASES: ${label} -> ${expected}`, () => {
    const config = parse({
      target_modules: targetModules,
      layers_to_transform: layersToTransform,
      layers_pattern: layersPattern,
    });
    assert.equal(isTargetModule(config, key), expected);
  });
}

const MORE_CASES: [string, Record<string, unknown>, string, boolean][] = [
  // list entries are exact names or ".suffix", never a substring
  ["suffix must follow a dot", { target_modules: ["q_proj"] }, "model.layers.0.attn.xq_proj", false],
  ["suffix match", { target_modules: ["q_proj"] }, "model.layers.0.self_attn.q_proj", true],
  ["multi-part suffix", { target_modules: ["self_attn.q_proj"] }, "model.layers.0.self_attn.q_proj", true],
  ["multi-part suffix, wrong parent", { target_modules: ["mlp.q_proj"] }, "model.layers.0.self_attn.q_proj", false],
  ["list entries are not regexes", { target_modules: [".*q_proj"] }, "model.layers.0.self_attn.q_proj", false],
  [
    "child of a target is not a target",
    { target_modules: ["q_proj"] },
    "model.layers.0.self_attn.q_proj.lora_A",
    false,
  ],
  ["gpt2 c_attn", { target_modules: ["c_attn"] }, "transformer.h.0.attn.c_attn", true],
  [
    "gpt2 c_attn layer filter (h)",
    { target_modules: ["c_attn"], layers_to_transform: [1], layers_pattern: "h" },
    "transformer.h.0.attn.c_attn",
    false,
  ],
  [
    "gpt2 c_attn layer 1",
    { target_modules: ["c_attn"], layers_to_transform: [1], layers_pattern: "h" },
    "transformer.h.1.attn.c_attn",
    true,
  ],
  // regex: full match, anchored at both ends
  ["regex fullmatch", { target_modules: String.raw`.*\.(q|v)_proj` }, "model.layers.3.self_attn.v_proj", true],
  ["regex is not a search", { target_modules: "q_proj" }, "model.layers.3.self_attn.q_proj", false],
  ["regex must match the end", { target_modules: ".*q_proj" }, "model.layers.3.self_attn.q_proj.lora_A", false],
  [
    "PEFT doc regex (T5)",
    { target_modules: ".*decoder.*(SelfAttention|EncDecAttention).*(q|v)$" },
    "decoder.block.0.layer.1.EncDecAttention.q",
    true,
  ],
  [
    "PEFT doc regex (T5), encoder",
    { target_modules: ".*decoder.*(SelfAttention|EncDecAttention).*(q|v)$" },
    "encoder.block.0.layer.0.SelfAttention.q",
    false,
  ],
  [
    "regex . is any char but newline",
    { target_modules: "model.layers.0.self_attn.q_proj" },
    "model_layers_0_self_attn_q_proj",
    true,
  ],
  ["regex (?i) flag", { target_modules: "(?i).*Q_PROJ" }, "model.layers.0.self_attn.q_proj", true],
  ["regex named group", { target_modules: String.raw`.*\.(?P<p>q|k)_proj` }, "model.layers.0.self_attn.k_proj", true],
  // layers_to_transform as an int, with and without layers_pattern
  [
    "int layer, no pattern, match",
    { target_modules: ["q_proj"], layers_to_transform: 1 },
    "model.layers.1.self_attn.q_proj",
    true,
  ],
  [
    "int layer, no pattern, other layer",
    { target_modules: ["q_proj"], layers_to_transform: 1 },
    "model.layers.0.self_attn.q_proj",
    false,
  ],
  [
    "int layer 0, no pattern",
    { target_modules: ["q_proj"], layers_to_transform: 0 },
    "model.layers.0.self_attn.q_proj",
    true,
  ],
  [
    "int layer, pattern",
    { target_modules: ["q_proj"], layers_to_transform: 1, layers_pattern: "layers" },
    "model.layers.1.self_attn.q_proj",
    true,
  ],
  [
    "no pattern: the last name.<digits>. wins",
    { target_modules: ["q"], layers_to_transform: [2] },
    "encoder.layers.1.blocks.2.attn.q",
    true,
  ],
  [
    "pattern list: first matching pattern decides",
    { target_modules: ["q"], layers_to_transform: [1], layers_pattern: ["blocks", "layers"] },
    "encoder.layers.1.blocks.2.attn.q",
    false,
  ],
  [
    "pattern is regex source",
    { target_modules: ["q"], layers_to_transform: [3], layers_pattern: "(?:h|layers)" },
    "transformer.h.3.attn.q",
    true,
  ],
  [
    "layer filter needs a prefix before the pattern",
    { target_modules: ["q_proj"], layers_to_transform: [0], layers_pattern: "layers" },
    "layers.0.q_proj",
    false,
  ],
  ["no layer index at all", { target_modules: ["lm_head"], layers_to_transform: [0] }, "lm_head.proj", false],
  [
    "exact name skips the layer filter",
    { target_modules: ["model.layers.5.self_attn.q_proj"], layers_to_transform: [0] },
    "model.layers.5.self_attn.q_proj",
    true,
  ],
  [
    "empty layers_to_transform list means all layers",
    { target_modules: ["q_proj"], layers_to_transform: [] },
    "model.layers.7.self_attn.q_proj",
    true,
  ],
  // exclude_modules, same forms as target_modules
  [
    "exclude list suffix",
    { target_modules: ["q_proj", "v_proj"], exclude_modules: ["v_proj"] },
    "model.layers.0.self_attn.v_proj",
    false,
  ],
  [
    "exclude list exact",
    { target_modules: ["q_proj"], exclude_modules: ["model.layers.0.self_attn.q_proj"] },
    "model.layers.0.self_attn.q_proj",
    false,
  ],
  [
    "exclude list other",
    { target_modules: ["q_proj"], exclude_modules: ["model.layers.0.self_attn.q_proj"] },
    "model.layers.1.self_attn.q_proj",
    true,
  ],
  [
    "exclude list is not a substring match",
    { target_modules: ["q_proj"], exclude_modules: ["attn.q"] },
    "model.layers.0.self_attn.q_proj",
    true,
  ],
  [
    "exclude regex",
    { target_modules: ["q_proj"], exclude_modules: String.raw`.*layers\.0\..*` },
    "model.layers.0.self_attn.q_proj",
    false,
  ],
  [
    "exclude regex fullmatch only",
    { target_modules: ["q_proj"], exclude_modules: "layers" },
    "model.layers.0.self_attn.q_proj",
    true,
  ],
  ["exclude beats an exact target", { target_modules: ["lm_head"], exclude_modules: ["lm_head"] }, "lm_head", false],
  [
    "exclude vision tower (regex)",
    { target_modules: ["gate_proj"], exclude_modules: ".*visual.*" },
    "model.visual.blocks.0.mlp.gate_proj",
    false,
  ],
  [
    "empty exclude string is ignored",
    { target_modules: ["q_proj"], exclude_modules: "" },
    "model.layers.0.self_attn.q_proj",
    true,
  ],
  // modules_to_save modules (and their children) are never LoRA targets
  ["modules_to_save excludes", { target_modules: ["score", "q_proj"], modules_to_save: ["score"] }, "score", false],
  [
    "modules_to_save excludes children",
    { target_modules: ["dense"], modules_to_save: ["classifier"] },
    "model.classifier.dense",
    false,
  ],
  [
    "modules_to_save needs a name boundary",
    { target_modules: ["rescore"], modules_to_save: ["score"] },
    "model.rescore",
    true,
  ],
  // target_modules None with target_parameters: nothing is a module target
  ["target_modules null + target_parameters []", { target_parameters: [] }, "model.layers.0.self_attn.q_proj", false],
];

for (const [name, json, key, expected] of MORE_CASES) {
  test(`target matching: ${name}`, () => {
    assert.equal(isTargetModule(parse(json), key), expected);
  });
}

test("all-linear: detected case-insensitively, must be expanded, output layer left out", () => {
  const config = parse({ target_modules: "ALL-LINEAR" });
  assert.equal(isAllLinear(config), true);
  assert.equal(isAllLinear(parse({ target_modules: ["all-linear"] })), false);
  assert.throws(() => isTargetModule(config, "model.layers.0.self_attn.q_proj"), UnsupportedError);
  const linear = ["model.layers.0.self_attn.q_proj", "model.layers.0.mlp.up_proj", "lm_head"];
  const expanded = expandAllLinear(config, linear);
  assert.equal(isAllLinear(expanded), false);
  assert.deepEqual(linear.filter(createTargetMatcher(expanded)), linear.slice(0, 2));
  assert.equal(isTargetModule(expanded, "model.layers.0.self_attn.k_proj"), false);
  const neox = expandAllLinear(config, ["gpt_neox.layers.0.attention.dense", "embed_out"], {
    outputEmbedding: "embed_out",
  });
  assert.deepEqual(neox.targetModules, ["gpt_neox.layers.0.attention.dense"]);
  const notAllLinear = parse({ target_modules: ["q_proj"] });
  assert.equal(expandAllLinear(notAllLinear, linear), notAllLinear);
});

test("a capturing group in layers_pattern fails as in PEFT (int(group(1)) is not a number)", () => {
  const config = parse({ target_modules: ["q"], layers_to_transform: [3], layers_pattern: "(h|layers)" });
  assert.throws(
    () => isTargetModule(config, "transformer.h.3.attn.q"),
    (e) => e instanceof AdapterConfigError && e.key === "layers_pattern",
  );
});

test("target_modules null (architecture default) is refused by the matcher", () => {
  assert.throws(
    () => isTargetModule(parse({}), "model.layers.0.self_attn.q_proj"),
    (e) => e instanceof UnsupportedError && e.key === "target_modules",
  );
});

// ---------------------------------------------------------------------------
// rank_pattern / alpha_pattern (get_pattern_key) and scaling
// Expected keys computed with CPython 3.11 `re.match(rf"(.*\.)?({key})$", name)`.
// ---------------------------------------------------------------------------

const PATTERN_KEY_CASES: [string[], string, string | null][] = [
  [["v_proj", "q_proj"], "model.layers.0.self_attn.q_proj", "q_proj"],
  [["proj"], "model.layers.0.self_attn.q_proj", null],
  [["up_proj"], "model.layers.0.mlp.gate_up_proj", null],
  [["layers.0.self_attn.q_proj", "q_proj"], "model.layers.0.self_attn.q_proj", "layers.0.self_attn.q_proj"],
  [["q_proj", "layers.0.self_attn.q_proj"], "model.layers.0.self_attn.q_proj", "q_proj"],
  [
    ["^model.decoder.layers.0.encoder_attn.k_proj"],
    "model.decoder.layers.0.encoder_attn.k_proj",
    "^model.decoder.layers.0.encoder_attn.k_proj",
  ],
  [["^model.decoder.layers.0.encoder_attn.k_proj"], "model.decoder.layers.10.encoder_attn.k_proj", null],
  [["^decoder.layers.0.encoder_attn.k_proj"], "model.decoder.layers.0.encoder_attn.k_proj", null],
  [[String.raw`layers\.[0-3]\..*q_proj`], "model.layers.2.self_attn.q_proj", String.raw`layers\.[0-3]\..*q_proj`],
  [[String.raw`layers\.[0-3]\..*q_proj`], "model.layers.12.self_attn.q_proj", null],
  [["self_attn.*"], "model.layers.0.self_attn.o_proj", "self_attn.*"],
  [["embed_tokens"], "model.embed_tokens", "embed_tokens"],
  [["c_attn"], "transformer.h.0.attn.c_attn", "c_attn"],
  [["h.1.attn.c_attn"], "transformer.h.11.attn.c_attn", null],
  [["2"], "ff.net.2", "2"],
  [["net.2", "2"], "ff.net.2", "net.2"],
];

for (const [keys, name, expected] of PATTERN_KEY_CASES) {
  test(`getPatternKey(${JSON.stringify(keys)}, ${name}) -> ${expected}`, () => {
    assert.equal(getPatternKey(keys, name), expected ?? undefined);
  });
}

test("rank/alpha patterns: first match wins, else r / lora_alpha", () => {
  const config = parse({
    r: 8,
    lora_alpha: 16,
    target_modules: ["q_proj", "k_proj", "v_proj", "o_proj"],
    rank_pattern: { "layers.0.self_attn.q_proj": 4, q_proj: 2, "^model.layers.1.self_attn.k_proj": 32 },
    alpha_pattern: { q_proj: 64, "self_attn.q_proj": 1 },
  });
  assert.equal(rankFor(config, "model.layers.0.self_attn.q_proj"), 4);
  assert.equal(rankFor(config, "model.layers.1.self_attn.q_proj"), 2);
  assert.equal(rankFor(config, "model.layers.1.self_attn.k_proj"), 32);
  assert.equal(rankFor(config, "model.layers.0.self_attn.k_proj"), 8);
  assert.equal(alphaFor(config, "model.layers.0.self_attn.q_proj"), 64);
  assert.equal(alphaFor(config, "model.layers.0.self_attn.v_proj"), 16);
  assert.equal(scalingFor(config, "model.layers.0.self_attn.q_proj"), 64 / 4);
  assert.equal(scalingFor(config, "model.layers.1.self_attn.k_proj"), 16 / 32);
  assert.equal(scalingFor(config, "model.layers.0.self_attn.o_proj"), 2);
});

test("rsLoRA scaling uses the pattern rank and alpha: alpha / sqrt(r)", () => {
  const config = parse({
    r: 16,
    lora_alpha: 8,
    use_rslora: true,
    target_modules: ["q_proj", "v_proj"],
    rank_pattern: { v_proj: 4 },
    alpha_pattern: { v_proj: 6 },
  });
  assert.equal(scalingFor(config, "model.layers.0.self_attn.q_proj"), 8 / 4);
  assert.equal(scalingFor(config, "model.layers.0.self_attn.v_proj"), 6 / 2);
  assert.equal(
    scalingFor(parse({ r: 8, lora_alpha: 16, use_rslora: true, target_modules: ["q"] }), "q"),
    16 / Math.sqrt(8),
  );
});

test("pattern order comes from the JSON text, even for integer-like keys", () => {
  const text =
    '{"target_modules": ["2"], "rank_pattern": {"net.2": 4, "2": 8}, "alpha_pattern": {"10": 1, "ff.net.10": 2}}';
  const fromText = parse(text);
  assert.deepEqual([...fromText.rankPattern.keys()], ["net.2", "2"]);
  assert.equal(rankFor(fromText, "ff.net.2"), 4);
  assert.deepEqual([...fromText.alphaPattern.keys()], ["10", "ff.net.10"]);
  // The parsed object has lost the order: the caller is warned.
  const warnings: string[] = [];
  const fromObject = parseLoraConfig(JSON.parse(text), { onWarning: (m) => warnings.push(m) });
  assert.deepEqual([...fromObject.rankPattern.keys()], ["2", "net.2"]);
  assert.equal(warnings.length, 2);
  assert.match(warnings[0], /rank_pattern.*JSON text/);
  assert.match(warnings[1], /alpha_pattern/);
  // Integer-like keys are also sorted among themselves; a single key cannot be reordered.
  const sorted: string[] = [];
  parseLoraConfig({ rank_pattern: { "10": 4, "2": 8 } }, { onWarning: (m) => sorted.push(m) });
  assert.equal(sorted.length, 1);
  const single: string[] = [];
  parseLoraConfig({ rank_pattern: { "2": 4 } }, { onWarning: (m) => single.push(m) });
  assert.deepEqual(single, []);
});

test("pattern order with repeated members and keys is Python json's (last member, first key position)", () => {
  // Python: json.loads(text)["rank_pattern"] == {"2": 5, "b.2": 2}, in that order.
  const text = String
    .raw`{"rank_pattern": {"a": 1}, "target_modules": ["q"], "rank_pattern": {"2": 4, "b.\u0032": 2, "2": 5}}`;
  const config = parse(text);
  assert.deepEqual([...config.rankPattern.entries()], [["2", 5], ["b.2", 2]]);
});

// ---------------------------------------------------------------------------
// Python regex semantics (expected values computed with CPython 3.11)
// ---------------------------------------------------------------------------

const REGEX_CASES: [string, "match" | "fullmatch", string, boolean][] = [
  ["a$", "fullmatch", "a", true],
  ["a$", "match", "a\n", true], // $ matches before a final newline
  ["a$", "fullmatch", "a\n", false],
  [String.raw`\Aab\Z`, "match", "ab\n", false],
  ["a.b", "fullmatch", "a\nb", false],
  ["(?s)a.b", "fullmatch", "a\nb", true],
  ["[]a]+", "fullmatch", "a]a", true],
  ["[^]a]+", "fullmatch", "bb", true],
  ["a{,2}b", "fullmatch", "aab", true],
  ["a{,2}b", "fullmatch", "aaab", false],
  ["a{}", "fullmatch", "a{}", true],
  ["a{x}", "fullmatch", "a{x}", true],
  ["(?x) a b  # comment", "fullmatch", "ab", true],
  ["a(?#c)b", "fullmatch", "ab", true],
  ["(?P<x>a)b", "fullmatch", "ab", true],
  ["a$|b", "match", "a\n", true],
  ["(a$)\n", "fullmatch", "a\n", true],
  ["(?m)a$\nb", "fullmatch", "a\nb", true],
  ["a*?b", "fullmatch", "aab", true],
  [String.raw`\U0001F600+`, "fullmatch", "\u{1F600}\u{1F600}", true],
  ["[\u{1F600}x]+", "fullmatch", "x\u{1F600}", true],
  [String.raw`\Aa\Z`, "fullmatch", "a", true],
  ["(?i:Q)_proj", "fullmatch", "Q_proj", true],
  ["(?i:Q)_proj", "fullmatch", "q_PROJ", false],
  ["(?m)^b$", "match", "b\n", true],
  ["a|b", "fullmatch", "b", true],
  [String.raw`\x61\u0062`, "fullmatch", "ab", true],
];

for (const [pattern, mode, input, expected] of REGEX_CASES) {
  test(`python re.${mode}(${JSON.stringify(pattern)}, ${JSON.stringify(input)}) is ${expected}`, () => {
    assert.equal(compilePythonRegex(pattern, mode).test(input), expected);
  });
}

for (
  const pattern of [
    String.raw`\e`,
    "a**",
    "*a",
    "(a",
    "a)",
    "[a",
    String.raw`\1`,
    "a{3,2}",
    "(?<n>a)",
    "a(?i)b",
    "(?P=y)",
  ]
) {
  test(`python re rejects ${JSON.stringify(pattern)}: AdapterConfigError`, () => {
    assert.throws(() => compilePythonRegex(pattern, "match"), AdapterConfigError);
  });
}

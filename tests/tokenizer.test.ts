import { test } from "node:test";
import assert from "node:assert/strict";
import { loadTokenizer, parseChatTemplate, renderChatTemplate, TextTokenizer } from "../src/tokenizer/mod.ts";
import { GenerationError } from "../src/errors.ts";
import { localSource } from "../src/storage/local.ts";
import { memorySource } from "../src/storage/memory.ts";

const DEMO = "examples/demo/byte-llama";
const utf8 = (text: string) => new TextEncoder().encode(text);

test("demo tokenizer: encode is UTF-8 bytes, decode inverts it", async () => {
  const tok = await loadTokenizer(localSource(DEMO));
  assert.deepEqual(tok.encode("The "), [84, 104, 101, 32]);
  const text = "naïve café — 日本 🙂\n\tdef f(x):";
  assert.deepEqual(tok.encode(text), [...utf8(text)]);
  assert.equal(tok.decode(tok.encode(text)), text);
  assert.equal(tok.decode([0xe2, 0x82]), "\uFFFD"); // incomplete character
  assert.equal(tok.eosTokenId, undefined); // the demo has no special tokens
  assert.equal(tok.chatTemplate, undefined);
});

/** The demo's byte-level tokenizer.json with `<s>` (256) and `</s>` (257) added as special tokens. */
async function withSpecialTokens(): Promise<Uint8Array> {
  const json = JSON.parse(new TextDecoder().decode(await localSource(DEMO).read("tokenizer.json")));
  const added = (id: number, content: string) => ({
    id,
    content,
    single_word: false,
    lstrip: false,
    rstrip: false,
    normalized: false,
    special: true,
  });
  json.added_tokens = [added(256, "<s>"), added(257, "</s>")];
  return utf8(JSON.stringify(json));
}

test("chat template from tokenizer_config.json, with special tokens", async () => {
  const config = {
    eos_token: { content: "</s>", special: true },
    bos_token: "<s>",
    chat_template: "{{ bos_token }}{% for m in messages %}[{{ m.role }}]{{ m.content }}{{ eos_token }}{% endfor %}" +
      "{% if add_generation_prompt %}[assistant]{% endif %}",
  };
  const tok = await loadTokenizer(memorySource("mem", {
    "tokenizer.json": await withSpecialTokens(),
    "tokenizer_config.json": utf8(JSON.stringify(config)),
  }));
  const messages = [{ role: "user", content: "hi" }];
  const prompt = tok.applyChatTemplate(messages);
  assert.equal(prompt, "<s>[user]hi</s>[assistant]");
  const ids = tok.encode(prompt, { addSpecialTokens: false });
  assert.deepEqual(ids.slice(0, 4), [256, 91, 117, 115]);
  assert.equal(ids.filter((id) => id === 257).length, 1);
  assert.equal(tok.eosTokenId, 257);
  assert.equal(tok.decode(ids), prompt);
  assert.equal(tok.decode(ids, { skipSpecialTokens: true }), "[user]hi[assistant]");
  assert.equal(tok.applyChatTemplate(messages, { addGenerationPrompt: false }), "<s>[user]hi</s>");
  assert.deepEqual(tok.specialTokens, { bos: "<s>", eos: "</s>", unk: undefined, pad: undefined });
});

test("chat_template.jinja overrides the config; named templates pick default or tool_use", async () => {
  const tokenizerJson = await localSource(DEMO).read("tokenizer.json");
  const tok = await loadTokenizer(memorySource("mem", {
    "tokenizer.json": tokenizerJson,
    "tokenizer_config.json": utf8(JSON.stringify({ chat_template: "config" })),
    "chat_template.jinja": utf8("file:{{ messages | length }}"),
  }));
  assert.equal(tok.applyChatTemplate([{ role: "user", content: "a" }]), "file:1");

  const named = parseChatTemplate([
    { name: "default", template: "D{{ messages[0].content }}" },
    { name: "tool_use", template: "T{{ tools | length }}" },
  ]);
  assert.deepEqual(Object.keys(named ?? {}), ["default", "tool_use"]);
  const msgs = [{ role: "user", content: "x" }];
  assert.equal(renderChatTemplate(named!, msgs, {}), "Dx");
  assert.equal(renderChatTemplate(named!, msgs, {}, { tools: [{}, {}] }), "T2");
  assert.throws(() => renderChatTemplate(named!, msgs, {}, { templateName: "rag" }), GenerationError);
});

test("no chat template, empty messages, broken templates: GenerationError", async () => {
  const tok = await loadTokenizer(localSource(DEMO));
  assert.throws(() => tok.applyChatTemplate([{ role: "user", content: "hi" }]), GenerationError);
  assert.throws(() => renderChatTemplate("x", [], {}), GenerationError);
  assert.throws(() => renderChatTemplate("{% for %}", [{ role: "user", content: "" }], {}), GenerationError);
  assert.throws(
    () => renderChatTemplate("{{ raise_exception('no system role') }}", [{ role: "user", content: "" }], {}),
    /no system role/,
  );
});

test("missing or malformed tokenizer files are named in the error", async () => {
  await assert.rejects(loadTokenizer(memorySource("mem", {})), /tokenizer\.json/);
  await assert.rejects(
    loadTokenizer(memorySource("mem", { "tokenizer.json": utf8("{not json") })),
    (e: unknown) => e instanceof GenerationError && e.file === "tokenizer.json",
  );
  assert.throws(() => new TextTokenizer({ model: { type: "NoSuchModel" } }), GenerationError);
});

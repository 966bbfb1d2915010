/**
 * `@huggingface/tokenizers` and `@huggingface/jinja`, pinned: tokenization
 * and chat templates for src/tokenizer.
 * @module
 */
export * as tokenizers from "npm:@huggingface/tokenizers@0.2.0";
export * as jinja from "npm:@huggingface/jinja@0.5.11";

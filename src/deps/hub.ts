/**
 * `@huggingface/hub`, pinned: the Hub client used by src/hub.
 * @module
 */
export * as hub from "npm:@huggingface/hub@2.17.5";

/**
 * The `openai` npm client (a dev dependency), pinned, for the server tests.
 * @module
 */
export { default as OpenAI } from "npm:openai@7.55.0";

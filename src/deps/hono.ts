/**
 * `hono`, pinned: the HTTP router of src/server and the built-in middleware
 * it uses (body limit, bearer token, CORS, server-sent events, HTTP exceptions).
 * @module
 */
export { Hono } from "npm:hono@4.13.19";
export type { Context, MiddlewareHandler } from "npm:hono@4.13.19";
export { bearerAuth } from "npm:hono@4.13.19/bearer-auth";
export { bodyLimit } from "npm:hono@4.13.19/body-limit";
export { cors } from "npm:hono@4.13.19/cors";
export { HTTPException } from "npm:hono@4.13.19/http-exception";
export { streamSSE } from "npm:hono@4.13.19/streaming";

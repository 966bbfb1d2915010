/**
 * `hono` and `zod`, pinned: the HTTP router and request validation for src/server.
 * @module
 */
export { Hono } from "npm:hono@4.13.19";
export type { Context } from "npm:hono@4.13.19";
export { z } from "npm:zod@4.6.7";

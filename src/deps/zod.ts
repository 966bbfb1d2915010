/**
 * `zod`, pinned: validation of the HTTP request bodies in src/server.
 * @module
 */
export { z } from "npm:zod@4.6.7";

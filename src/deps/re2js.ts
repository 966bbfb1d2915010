/**
 * `re2js`, pinned: a linear-time regex engine (RE2's automata, no
 * backtracking) for the patterns that adapter configs carry, so a
 * catastrophic pattern cannot freeze the process.
 * @module
 */
export { RE2JS, RE2JSException } from "npm:re2js@2.10.0";

/**
 * What the command-line examples share: `node:util`'s strict parser with
 * `-h`/`--help`, and a usage error that prints the usage text and exits 2.
 * @module
 */
import process from "node:process";
import { parseArgs, type ParseArgsOptionsConfig } from "node:util";

/** The options of `T` and `--help`, parsed strictly. */
type Config<T extends ParseArgsOptionsConfig> = {
  args: string[];
  strict: true;
  options: T & { help: { type: "boolean"; short: "h" } };
};

/** Parsed values of `T`'s options. */
export type Values<T extends ParseArgsOptionsConfig> = ReturnType<typeof parseArgs<Config<T>>>["values"];

/**
 * Prints `reason` and `usageText` to stderr and exits 2 (a bad command line).
 *
 * @example
 * ```ts
 * import { usageError } from "./cli.ts";
 * const port = (value: string) => Number(value) || usageError("usage: x.ts --port N", "--port needs a number");
 * ```
 */
export function usageError(usageText: string, reason: string): never {
  process.stderr.write(`${reason}\n${usageText}\n`);
  process.exit(2);
}

/**
 * Parses `argv` (the process's arguments by default) with `options`: a
 * parse error exits 2 with `usageText`, `--help` prints it and exits 0.
 *
 * @example
 * ```ts
 * import { commandLine } from "./cli.ts";
 * const values = commandLine("usage: x.ts --name NAME", { name: { type: "string" } }, ["--name", "a"]);
 * console.log(values.name); // "a"
 * ```
 */
export function commandLine<const T extends ParseArgsOptionsConfig>(
  usageText: string,
  options: T,
  argv: string[] = process.argv.slice(2),
): Values<T> {
  let values: Values<T> | undefined;
  try {
    ({ values } = parseArgs<Config<T>>({
      args: argv,
      strict: true,
      options: { ...options, help: { type: "boolean", short: "h" } },
    }));
  } catch (error) {
    usageError(usageText, (error as Error).message);
  }
  // `help` is in every T's values; the generic conditional type does not say so until T is known.
  if ((values as { help?: boolean }).help) {
    process.stdout.write(`${usageText}\n`);
    process.exit(0);
  }
  return values!;
}

import { existsSync } from "node:fs";
import { defineConfig } from "tsup";
import { DRIVERS, DRIVER_PEERS } from "./src/config/registry.js";

/** The build entry of each registered driver: dist/drivers/<name>.js from its file or its folder's index. */
export function driverEntries(): Record<string, string> {
  return Object.fromEntries(DRIVERS.map(({ name }) => [`drivers/${name}`, driverSource(name)]));
}

/** A driver's module: src/drivers/<name>.ts, or src/drivers/<name>/index.ts for a driver split into a folder. */
export function driverSource(name: string): string {
  const file = `src/drivers/${name}.ts`;
  return existsSync(file) ? file : `src/drivers/${name}/index.ts`;
}

export default defineConfig({
  entry: {
    index: "src/index.ts",
    testing: "src/testing/index.ts",
    coordination: "src/coordination/index.ts",
    server: "src/server/index.ts",
    git: "src/git/index.ts",
    "cli/main": "src/cli/main.ts",
    ...driverEntries(),
  },
  format: ["esm"],
  target: "node20",
  dts: true,
  clean: true,
  sourcemap: true,
  splitting: true,
  // Peers: the kit's test runner and the backends' clients, installed by whoever uses them (a package also covers its subpaths, as mysql2/promise).
  external: ["vitest", ...DRIVER_PEERS],
});

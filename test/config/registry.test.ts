import { existsSync, readFileSync, readdirSync, statSync } from "node:fs";
import { join } from "node:path";
import type { Options } from "tsup";
import { describe, expect, it } from "vitest";
import buildConfig, { driverSource } from "../../tsup.config.js";
import { STORE_SCHEMES } from "../../src/cli/storeUrl.js";
import { DRIVERS, DRIVER_PEERS } from "../../src/config/registry.js";

// The registry is the one list of drivers; every other place that lists them must agree with it.

const ROOT = join(import.meta.dirname, "../..");
const NAMES = DRIVERS.map((entry) => entry.name);

interface PackageJson {
  dependencies: Record<string, string>;
  peerDependencies: Record<string, string>;
  peerDependenciesMeta: Record<string, { optional?: boolean }>;
  exports: Record<string, unknown>;
}
const pkg = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as PackageJson;

function tsupOptions(): Options {
  expect(typeof buildConfig).toBe("object");
  expect(Array.isArray(buildConfig)).toBe(false);
  return buildConfig as Options;
}

/** The package names a driver's own files import (node: builtins and relative paths left out). */
function importedPackages(name: string): Set<string> {
  const source = join(ROOT, driverSource(name));
  const files = source.endsWith("/index.ts") ? readdirSync(join(source, "..")).map((file) => join(source, "..", file)) : [source];
  const packages = new Set<string>();
  for (const file of files.filter((path) => path.endsWith(".ts"))) {
    for (const [, specifier] of readFileSync(file, "utf8").matchAll(/(?:from|import\()\s*"([^".][^"]*)"/g)) {
      if (specifier!.startsWith("node:")) continue;
      const parts = specifier!.split("/");
      packages.add(specifier!.startsWith("@") ? parts.slice(0, 2).join("/") : parts[0]!);
    }
  }
  return packages;
}

describe("the driver registry", () => {
  it("lists each driver once", () => {
    expect(new Set(NAMES).size).toBe(NAMES.length);
    const schemes = DRIVERS.flatMap((entry) => [...entry.schemes]);
    expect(new Set(schemes).size).toBe(schemes.length);
  });

  it("matches the modules in src/drivers/: a <name>.ts file or a <name>/ folder with an index.ts each", () => {
    const modules = readdirSync(join(ROOT, "src/drivers"))
      .filter((entry) => entry !== "support")
      .map((entry) => {
        if (statSync(join(ROOT, "src/drivers", entry)).isDirectory()) {
          expect(existsSync(join(ROOT, "src/drivers", entry, "index.ts")), `src/drivers/${entry}/index.ts`).toBe(true);
          return entry;
        }
        expect(entry).toMatch(/\.ts$/);
        return entry.replace(/\.ts$/, "");
      });
    expect(modules.sort()).toEqual([...NAMES].sort());
  });

  it("matches package.json's driver exports, in order", () => {
    const exported = Object.entries(pkg.exports).filter(([path]) => path.startsWith("./drivers/"));
    expect(exported).toEqual(NAMES.map((name) => [`./drivers/${name}`, { types: `./dist/drivers/${name}.d.ts`, import: `./dist/drivers/${name}.js` }]));
  });

  it("gives tsup one entry per driver, from its module", () => {
    const entry = tsupOptions().entry as Record<string, string>;
    const drivers = Object.entries(entry).filter(([output]) => output.startsWith("drivers/"));
    expect(drivers).toEqual(NAMES.map((name) => [`drivers/${name}`, driverSource(name)]));
    for (const [, source] of drivers) expect(existsSync(join(ROOT, source)), source).toBe(true);
  });

  it("names each driver's client packages: what its files import beyond stowage's dependencies, each an optional peer kept out of the build", () => {
    const dependencies = Object.keys(pkg.dependencies);
    for (const { name, peers } of DRIVERS) {
      const imported = [...importedPackages(name)].filter((specifier) => !dependencies.includes(specifier));
      expect(imported.sort(), name).toEqual([...peers].sort());
    }
    const external = tsupOptions().external;
    for (const peer of DRIVER_PEERS) {
      expect(external, peer).toContain(peer);
      expect(pkg.peerDependencies[peer], peer).toBeDefined();
      expect(pkg.peerDependenciesMeta[peer]?.optional, peer).toBe(true);
    }
  });

  it("gives the CLI its store URL schemes", () => {
    expect(STORE_SCHEMES).toEqual(DRIVERS.flatMap((entry) => [...entry.schemes]));
  });

  it("has a docs page and a row in README's driver table for each driver", () => {
    const readme = readFileSync(join(ROOT, "README.md"), "utf8");
    for (const name of NAMES) {
      expect(existsSync(join(ROOT, "docs", `${name}.md`)), `docs/${name}.md`).toBe(true);
      expect(readme, name).toContain(`| [${name}](docs/${name}.md) | \`stowage/drivers/${name}\` |`);
    }
  });
});

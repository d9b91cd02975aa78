import js from "@eslint/js";
import tseslint from "typescript-eslint";

// The Git engine's layers, lowest first (docs/git-engine.md): a folder imports only the folders below it and the
// shared helpers at src/git/'s top; only store/ and remote/ reach stowage's core (its types, options, key rules).
const GIT_LAYERS = ["objects", "packs", "refs", "repo", "store", "remote"];
const CORE_USERS = ["store", "remote"];

/** no-restricted-imports: `forbidden` are regexes on the import specifier, each reported with `message`. */
function importRule(files, forbidden, message, ignores = []) {
  return { files, ignores, rules: { "no-restricted-imports": ["error", { patterns: forbidden.map((regex) => ({ regex, message })) }] } };
}

/** The rule for src/git. */
function gitImportRule(files, forbidden, ignores = []) {
  return importRule(files, forbidden, "breaks the Git engine's layering (docs/git-engine.md, \"Files\")", ignores);
}

const gitLayerRules = GIT_LAYERS.map((layer, level) => {
  const upper = GIT_LAYERS.slice(level + 1);
  const outside = CORE_USERS.includes(layer) ? "^\\.\\./\\.\\./(?!core/)" : "^\\.\\./\\.\\./";
  return gitImportRule([`src/git/${layer}/**/*.ts`], [...upper.map((name) => `^\\.\\./${name}/`), "^\\.\\./index\\.js$", outside]);
});
// The shared helpers import no layer; errors.ts and fileUtil.ts are the lower layers' one way to core's errors and mkdir.
const helpersOf = (outside) => [`^\\./(${GIT_LAYERS.join("|")})/`, "^\\./index\\.js$", outside];
const gitHelperRules = [
  gitImportRule(["src/git/*.ts"], helpersOf("^\\.\\./"), ["src/git/index.ts"]),
  gitImportRule(["src/git/errors.ts"], helpersOf("^\\.\\./(?!core/errors\\.js$)")),
  gitImportRule(["src/git/fileUtil.ts"], helpersOf("^\\.\\./(?!core/directories\\.js$)")),
];

// Drivers import core and git, never each other, so each stays one thin entry a user can import alone; what several
// drivers share lives in drivers/support/. The core imports nothing outside itself: no driver, no engine.
/** The rule for drivers and core. */
const layeringRule = (files, forbidden) =>
  importRule(files, forbidden, "breaks the module layering (drivers import core and git, never each other; core imports no driver)");
/** The rule for the files `depth` folders below src/drivers/ (a driver's folder such as redis/, support/, support/fs/). */
function driverRule(depth) {
  const toDrivers = depth === 0 ? "\\./" : "(\\.\\./)".repeat(depth);
  const outside = "(?!core/|git/)";
  // Within src/drivers/ only support/ and the file's own folder; above it only core and git.
  const otherDriver = depth === 0 ? `^${toDrivers}(?!support/)` : `^${toDrivers}(?!\\.\\./|support/)`;
  return layeringRule([`src/drivers/${"*/".repeat(depth)}*.ts`], [otherDriver, `^${"(\\.\\./)".repeat(depth + 1)}${outside}`]);
}
const layeringRules = [
  ...[0, 1, 2, 3].map(driverRule),
  layeringRule(["src/core/*.ts"], ["^\\.\\./"]),
  layeringRule(["src/core/*/**/*.ts"], ["^\\.\\./\\.\\./"]),
];

export default tseslint.config(
  { ignores: ["dist/", "node_modules/", "coverage/"] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    rules: {
      "@typescript-eslint/no-explicit-any": "error",
      "@typescript-eslint/no-unused-vars": ["error", { argsIgnorePattern: "^_", varsIgnorePattern: "^_", destructuredArrayIgnorePattern: "^_" }],
      "no-empty": ["error", { allowEmptyCatch: false }],
    },
  },
  ...gitLayerRules,
  ...gitHelperRules,
  ...layeringRules,
);

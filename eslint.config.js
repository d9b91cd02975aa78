import js from "@eslint/js";
import tseslint from "typescript-eslint";

// The Git engine's layers, lowest first (docs/git-engine.md): a folder imports only the folders below it and the
// shared helpers at src/git/'s top; only store/ and remote/ reach stowage's core (its types, options, key rules).
const GIT_LAYERS = ["objects", "packs", "refs", "repo", "store", "remote"];
const CORE_USERS = ["store", "remote"];

/** no-restricted-imports for src/git: `forbidden` are regexes on the import specifier. */
function gitImportRule(files, forbidden, ignores = []) {
  const message = "breaks the Git engine's layering (docs/git-engine.md, \"Files\")";
  return { files, ignores, rules: { "no-restricted-imports": ["error", { patterns: forbidden.map((regex) => ({ regex, message })) }] } };
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
);

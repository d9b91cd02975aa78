import ts from "typescript";
import { readdirSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";

/**
 * Keeps the public API's TSDoc honest, cheaply: the entry points of the
 * package's `exports` are parsed and their exports resolved (no type check,
 * so it stays fast). Every exported function carries a doc comment, every
 * driver factory names what it throws, every `@throws` names real codes, and
 * every option whose doc talks about its default states it with `@default`.
 */
const root = join(import.meta.dirname, "..", "..");
const driverFiles = readdirSync(join(root, "src/drivers"), { withFileTypes: true })
  .filter((entry) => entry.isFile() && entry.name.endsWith(".ts"))
  .map((entry) => `src/drivers/${entry.name}`);
const driverEntries = [...driverFiles, "src/drivers/redis/index.ts"];
const entryFiles = [
  "src/index.ts",
  "src/testing/index.ts",
  "src/server/index.ts",
  "src/git/index.ts",
  "src/coordination/index.ts",
  ...driverEntries,
];

const compilerOptions: ts.CompilerOptions = {
  module: ts.ModuleKind.NodeNext,
  moduleResolution: ts.ModuleResolutionKind.NodeNext,
  target: ts.ScriptTarget.ES2022,
  noEmit: true,
  noLib: true,
  types: [],
};
// Only stowage's own declarations matter: packages' typings are read as empty, which keeps the parse under a second.
const host = ts.createCompilerHost(compilerOptions);
const readSource = host.getSourceFile.bind(host);
host.getSourceFile = (fileName, languageVersion, ...rest) =>
  fileName.includes("/node_modules/") ? ts.createSourceFile(fileName, "", languageVersion) : readSource(fileName, languageVersion, ...rest);
const program = ts.createProgram(entryFiles.map((file) => join(root, file)), compilerOptions, host);
const checker = program.getTypeChecker();

/** The declarations a module exports, through `export ... from` re-exports. */
function exportedDeclarations(file: string): { name: string; declaration: ts.Declaration }[] {
  const source = program.getSourceFile(join(root, file));
  if (source === undefined) throw new Error(`cannot parse ${file}`);
  const moduleSymbol = checker.getSymbolAtLocation(source);
  if (moduleSymbol === undefined) return [];
  return checker.getExportsOfModule(moduleSymbol).flatMap((symbol) => {
    const target = symbol.flags & ts.SymbolFlags.Alias ? checker.getAliasedSymbol(symbol) : symbol;
    return (target.declarations ?? []).map((declaration) => ({ name: symbol.name, declaration }));
  });
}

function relativeName(node: ts.Node): string {
  return node.getSourceFile().fileName.slice(root.length + 1);
}

/** The node a doc comment sits on: a variable's statement; else the declaration itself (a function, an `export default`). */
function documentedNode(declaration: ts.Declaration): ts.Node {
  if (ts.isVariableDeclaration(declaration)) return declaration.parent.parent;
  return declaration;
}

function hasDocComment(node: ts.Node): boolean {
  return ts.getJSDocCommentsAndTags(node).some((doc) => ts.isJSDoc(doc) && (doc.comment !== undefined || (doc.tags?.length ?? 0) > 0));
}

function isFunctionLike(declaration: ts.Declaration): boolean {
  if (ts.isFunctionDeclaration(declaration)) return true;
  if (ts.isExportAssignment(declaration)) return true;
  if (ts.isVariableDeclaration(declaration) && declaration.initializer !== undefined) {
    const init = declaration.initializer;
    return ts.isArrowFunction(init) || ts.isFunctionExpression(init) || ts.isCallExpression(init);
  }
  return false;
}

/** Exported functions (driver factories included) without a doc comment; an overload set needs one on any signature. */
function undocumentedFunctions(): string[] {
  const byName = new Map<string, ts.Declaration[]>();
  for (const file of entryFiles) {
    for (const { name, declaration } of exportedDeclarations(file)) {
      if (!isFunctionLike(declaration)) continue;
      const id = `${relativeName(declaration)}: ${name}`;
      const group = byName.get(id) ?? [];
      if (!group.includes(declaration)) group.push(declaration);
      byName.set(id, group);
    }
  }
  return [...byName].filter(([, declarations]) => !declarations.some((declaration) => hasDocComment(documentedNode(declaration)))).map(([id]) => id);
}

/** Driver factories (each driver module's default export) whose doc has no `@throws`. */
function factoriesWithoutThrows(): string[] {
  const factories = driverEntries.flatMap((file) =>
    exportedDeclarations(file).filter(({ name }) => name === "default").map(({ declaration }) => ({ file, declaration })),
  );
  return factories
    .filter(({ declaration }) => !ts.getJSDocCommentsAndTags(documentedNode(declaration)).some((doc) => ts.isJSDoc(doc) && (doc.tags ?? []).some((tag) => tag.tagName.text === "throws")))
    .map(({ file }) => file);
}

/** Text of a property's doc comments, tags other than `@default` included. */
function docText(member: ts.TypeElement): { text: string; hasDefaultTag: boolean } {
  const tags = ts.getJSDocTags(member);
  const comments = ts.getJSDocCommentsAndTags(member).filter(ts.isJSDoc);
  const text = [
    ...comments.map((doc) => ts.getTextOfJSDocComment(doc.comment) ?? ""),
    ...tags.filter((tag) => tag.tagName.text !== "default").map((tag) => ts.getTextOfJSDocComment(tag.comment) ?? ""),
  ].join(" ");
  return { text, hasDefaultTag: tags.some((tag) => tag.tagName.text === "default") };
}

/**
 * How a doc names the option's own default: "(default 10)", "`x` (default)",
 * "Default: …" or "Default false" opening a sentence. Not "by default" or
 * "the default index", which speak of something else.
 */
const NAMES_A_DEFAULT = /(^|[(.;:]\s*)default\b/i;

/** Options (properties of exported interfaces) whose doc names a default but has no `@default` tag. */
function defaultsWithoutTag(): string[] {
  const seen = new Set<ts.Node>();
  const missing: string[] = [];
  for (const file of entryFiles) {
    for (const { name, declaration } of exportedDeclarations(file)) {
      if (seen.has(declaration) || !ts.isInterfaceDeclaration(declaration)) continue;
      seen.add(declaration);
      for (const member of declaration.members) {
        if (!ts.isPropertySignature(member)) continue;
        const { text, hasDefaultTag } = docText(member);
        if (NAMES_A_DEFAULT.test(text) && !hasDefaultTag) missing.push(`${relativeName(member)}: ${name}.${member.name.getText()}`);
      }
    }
  }
  return missing;
}

/** The codes `StorageErrorCode` lists, read from its declaration. */
function knownCodes(): Set<string> {
  const errors = program.getSourceFile(join(root, "src/core/errors.ts"));
  const alias = errors?.statements.find((statement): statement is ts.TypeAliasDeclaration => ts.isTypeAliasDeclaration(statement) && statement.name.text === "StorageErrorCode");
  if (alias === undefined || !ts.isUnionTypeNode(alias.type)) throw new Error("StorageErrorCode is not a union in src/core/errors.ts");
  return new Set(alias.type.types.flatMap((member) => (ts.isLiteralTypeNode(member) && ts.isStringLiteral(member.literal) ? [member.literal.text] : [])));
}

/** `@throws` lines, in the sources the entry points reach, that name a code StorageError does not have. */
function unknownThrownCodes(): string[] {
  const codes = knownCodes();
  return program
    .getSourceFiles()
    .filter((source) => source.fileName.startsWith(join(root, "src") + "/"))
    .flatMap((source) => (source.text.match(/@throws[^\n]*/g) ?? []).flatMap((line) => (line.match(/\bE_[A-Z_]+/g) ?? []).filter((code) => !codes.has(code)).map((code) => `${relativeName(source)}: ${code}`)));
}

describe("TSDoc of the public API", () => {
  it("walks the declarations the entry points export", () => {
    const names = new Set(entryFiles.flatMap((file) => exportedDeclarations(file).map(({ name, declaration }) => `${relativeName(declaration)}: ${name}`)));
    for (const expected of [
      "src/index.ts: createStorage",
      "src/core/types.ts: CreateStorageOptions",
      "src/core/wrapDriver.ts: findLayer",
      "src/drivers/fs.ts: FsOptions",
      "src/drivers/fs.ts: default",
      "src/drivers/redis/index.ts: RedisDriverOptions",
      "src/testing/index.ts: testDriver",
      "src/server/index.ts: createStorageServer",
      "src/git/repo/maintenance.ts: maintain",
      "src/coordination/locks.ts: createLocks",
      "src/coordination/receipts.ts: createReceipts",
    ]) {
      expect(names).toContain(expected);
    }
    for (const file of driverEntries) expect(names).toContain(`${file}: default`);
  });

  it("documents every exported function", () => {
    expect(undocumentedFunctions()).toEqual([]);
  });

  it("names the codes every driver factory throws", () => {
    expect(factoriesWithoutThrows()).toEqual([]);
  });

  it("names only codes StorageError has in @throws", () => {
    expect(knownCodes().size).toBeGreaterThan(10);
    expect(unknownThrownCodes()).toEqual([]);
  });

  it("states with @default every default an option's doc mentions", () => {
    expect(defaultsWithoutTag()).toEqual([]);
  });
});

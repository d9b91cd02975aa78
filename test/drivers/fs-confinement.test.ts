import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, lstatSync, mkdirSync, readFileSync, readdirSync, realpathSync, renameSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { join, relative } from "node:path";
import { describe, expect, it } from "vitest";
import { createStorage, isStorageError, type Driver } from "../../src/index.js";
import fsDriver from "../../src/drivers/fs.js";
import fsLite from "../../src/drivers/fs-lite.js";
import { tempDir } from "../helpers/tempDir.js";

async function codeOf(action: () => unknown): Promise<string | undefined> {
  try {
    await action();
  } catch (error) {
    return isStorageError(error) ? error.code : `not a StorageError: ${String(error)}`;
  }
  return undefined;
}

/** Every entry below `dir` (links as links, never followed) and a hash of each file: what "untouched" is checked against. */
function snapshot(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const entry of readdirSync(dir, { recursive: true, withFileTypes: true })) {
    const path = join(entry.parentPath, entry.name);
    const stats = lstatSync(path);
    out[relative(dir, path)] = stats.isFile() ? createHash("sha256").update(readFileSync(path)).digest("hex") : stats.isDirectory() ? "dir" : "link";
  }
  return out;
}

async function* chunks(...parts: string[]): AsyncGenerator<Uint8Array> {
  for (const part of parts) yield Buffer.from(part);
}

/** A key of exactly `total` UTF-8 bytes: a last segment of 253 or 254 bytes, the rest in segments of at most 255 (NAME_MAX). */
function keyOfBytes(total: number): string {
  for (const lastLength of [254, 253]) {
    const segments = ["f".repeat(lastLength)];
    let rest = total - lastLength;
    while (rest >= 2) {
      const length = Math.min(255, rest - 1);
      segments.unshift("d".repeat(length));
      rest -= length + 1;
    }
    if (rest === 0) return segments.join(":");
  }
  throw new Error(`no key of ${total} bytes`);
}

const drivers: [string, (base: string) => Driver][] = [
  ["fs", (base) => fsDriver({ base })],
  ["fs-lite", (base) => fsLite({ base })],
];

describe.each(drivers)("%s never acts outside base", (_name, make) => {
  /** A base holding `link`, a directory symlink out of it, and `file-link`, a file symlink out of it. */
  function escapeSetup() {
    const outside = tempDir("outside");
    writeFileSync(join(outside, "secret"), '"top secret"');
    writeFileSync(join(outside, "secret$"), '{"expires":1}');
    mkdirSync(join(outside, "sub"));
    writeFileSync(join(outside, "sub", "deeper"), '"deep"');
    const base = tempDir();
    symlinkSync(outside, join(base, "link"));
    symlinkSync(join(outside, "secret"), join(base, "file-link"));
    const storage = createStorage({ driver: make(base) });
    return { outside, base, storage, before: snapshot(outside) };
  }

  it("every operation through a directory symlink out of base is E_INVALID_KEY, and the outside stays as it was", async () => {
    const { outside, storage, before } = escapeSetup();
    const refused = {
      getItem: () => storage.getItem("link:secret"),
      getItemMissing: () => storage.getItem("link:missing"),
      getItemBelowMissing: () => storage.getItem("link:no:such:key"),
      getItemRaw: () => storage.getItemRaw("link:secret"),
      getItemStream: () => storage.getItemStream("link:secret"),
      getMeta: () => storage.getMeta("link:secret"),
      hasItem: () => storage.hasItem("link:sub:deeper"),
      setItem: () => storage.setItem("link:secret", "overwritten"),
      setItemNew: () => storage.setItem("link:new", 1),
      setItemDeep: () => storage.setItem("link:made:below:it", 1),
      setItemTtl: () => storage.setItem("link:secret", 1, { ttl: 60_000 }),
      setItems: () => storage.setItems([{ key: "link:batch", value: 1 }]),
      setItemRaw: () => storage.setItemRaw("link:secret", new Uint8Array([1, 2])),
      setItemRawDeep: () => storage.setItemRaw("link:raw:dir:x", new Uint8Array([1])),
      setItemStream: () => storage.setItemStream("link:streamed", chunks("a", "b")),
      setItemStreamDeep: () => storage.setItemStream("link:stream:dir:x", chunks("a")),
      setMeta: () => storage.setMeta("link:secret", { note: 1 }),
      removeItem: () => storage.removeItem("link:secret"),
      removeItemDeep: () => storage.removeItem("link:sub:deeper"),
      removeItemWithMeta: () => storage.removeItem("link:secret", { removeMeta: true }),
      removeMeta: () => storage.removeMeta("link:secret"),
      clearLink: () => storage.clear("link"),
      clearBelowLink: () => storage.clear("link:sub"),
      getKeysLink: () => storage.getKeys("link"),
    };
    const codes = Object.fromEntries(await Promise.all(Object.entries(refused).map(async ([name, action]) => [name, await codeOf(action)])));
    expect(codes).toEqual(Object.fromEntries(Object.keys(refused).map((name) => [name, "E_INVALID_KEY"])));
    expect(snapshot(outside)).toEqual(before);
  });

  it("a file symlink out of base is refused on every operation; clear() and listings leave it and its target alone", async () => {
    const { base, outside, storage, before } = escapeSetup();
    for (const action of [
      () => storage.getItem("file-link"),
      () => storage.hasItem("file-link"),
      () => storage.getMeta("file-link"),
      () => storage.setItem("file-link", 1),
      () => storage.setItemRaw("file-link", new Uint8Array([1])),
      () => storage.setItemStream("file-link", chunks("x")),
      () => storage.removeItem("file-link"),
    ]) {
      expect(await codeOf(action)).toBe("E_INVALID_KEY");
    }
    await storage.setItem("inside", 1);
    expect(await storage.getKeys()).toEqual(["inside"]);
    await storage.clear();
    expect(await storage.getKeys()).toEqual([]);
    expect(readdirSync(base).sort()).toEqual(["file-link", "link"]);
    expect(snapshot(outside)).toEqual(before);
  });

  it("the sync API refuses the same way", () => {
    const { outside, storage, before } = escapeSetup();
    expect(() => storage.removeItemSync("link:secret")).toThrow(expect.objectContaining({ code: "E_INVALID_KEY" }));
    expect(() => storage.setItemSync("link:x:y", 1)).toThrow(expect.objectContaining({ code: "E_INVALID_KEY" }));
    expect(() => storage.getItemSync("link:secret")).toThrow(expect.objectContaining({ code: "E_INVALID_KEY" }));
    expect(() => storage.clearSync("link")).toThrow(expect.objectContaining({ code: "E_INVALID_KEY" }));
    expect(snapshot(outside)).toEqual(before);
  });

  it("a streamed write whose directory is moved out of base and swapped for a link meanwhile is refused before its rename", async () => {
    const base = tempDir();
    const outside = tempDir("outside");
    const storage = createStorage({ driver: make(base) });
    await storage.setItem("d:k", "old");
    async function* swapping(): AsyncGenerator<Uint8Array> {
      yield Buffer.from("new ");
      renameSync(join(base, "d"), join(outside, "moved"));
      symlinkSync(join(outside, "moved"), join(base, "d"));
      yield Buffer.from("value");
    }
    expect(await codeOf(() => storage.setItemStream("d:k", swapping()))).toBe("E_INVALID_KEY");
    expect(readdirSync(join(outside, "moved"))).toEqual(["k"]);
    expect(readFileSync(join(outside, "moved", "k"), "utf8")).toBe('"old"');
  });

  it("a refused write creates no directory, neither outside nor inside base", async () => {
    const { base, outside, storage, before } = escapeSetup();
    mkdirSync(join(base, "a"));
    symlinkSync(outside, join(base, "a", "out"));
    expect(await codeOf(() => storage.setItem("a:out:b:c:d", 1))).toBe("E_INVALID_KEY");
    expect(await codeOf(() => storage.setItem(`fresh:dirs:${"x".repeat(300)}`, 1))).toBe("E_INVALID_KEY");
    expect(await codeOf(() => storage.setItem("fresh:dirs:.git:config", 1))).toBe("E_INVALID_KEY");
    expect(snapshot(outside)).toEqual(before);
    expect(readdirSync(base).sort()).toEqual(["a", "file-link", "link"]);
  });

  it("symlinks inside base that lead inside base are followed by key operations, never descended by listings", async () => {
    const base = tempDir();
    const storage = createStorage({ driver: make(base) });
    await storage.setItem("real:value", "v");
    symlinkSync(join(base, "real"), join(base, "alias-dir"));
    symlinkSync(join(base, "real", "value"), join(base, "alias-file"));
    symlinkSync("..", join(base, "real", "up"));
    expect(await storage.getItem("alias-dir:value")).toBe("v");
    expect(await storage.getItem("alias-file")).toBe("v");
    expect(await storage.getItem("real:up:real:value")).toBe("v");
    await storage.setItem("alias-dir:second", 2);
    expect(readFileSync(join(base, "real", "second"), "utf8")).toBe("2");
    // Each real directory is listed once, under its own path: no cycle through `up`, no duplicates through `alias-dir`.
    expect((await storage.getKeys()).sort()).toEqual(["alias-file", "real:second", "real:value"]);
    expect((await storage.getKeys("alias-dir")).sort()).toEqual(["alias-dir:second", "alias-dir:value"]);
    // Removing a link's key removes the link, not what it leads to.
    await storage.removeItem("alias-file");
    expect(lstatSync(join(base, "real", "value")).isFile()).toBe(true);
    expect(existsSync(join(base, "alias-file"))).toBe(false);
    await storage.clear();
    // `real` keeps its link `up`, which is no key.
    expect(readdirSync(base).sort()).toEqual(["alias-dir", "real"]);
    expect(readdirSync(join(base, "real"))).toEqual(["up"]);
  });

  it("symlink loops and dangling links are skipped by listings and clear, hold no value, and cannot be written through", async () => {
    const base = tempDir();
    const storage = createStorage({ driver: make(base) });
    await storage.setItem("ok", 1);
    await storage.setItem("dir:inner", 2);
    symlinkSync("self", join(base, "self"));
    symlinkSync("ping", join(base, "pong"));
    symlinkSync("pong", join(base, "ping"));
    symlinkSync(join(base, "nowhere"), join(base, "dangling"));
    symlinkSync("/nonexistent/stowage/target", join(base, "dir", "gone"));
    expect((await storage.getKeys()).sort()).toEqual(["dir:inner", "ok"]);
    const seen: string[] = [];
    for await (const batch of storage.iterateKeys("", { batchSize: 1 })) seen.push(...batch);
    expect(seen.sort()).toEqual(["dir:inner", "ok"]);
    for (const key of ["self", "ping", "dangling", "dir:gone", "self:below", "dangling:below"]) {
      expect(await storage.getItem(key)).toBeNull();
      expect(await storage.hasItem(key)).toBe(false);
      expect(await storage.getMeta(key)).toEqual({});
    }
    for (const key of ["self", "ping", "dangling", "dir:gone", "self:below", "dangling:below"]) {
      expect(await codeOf(() => storage.setItem(key, "x")), key).toBe("E_INVALID_KEY");
    }
    await storage.removeItem("dangling");
    await storage.clear();
    expect(await storage.getKeys()).toEqual([]);
    expect(readdirSync(base).sort()).toEqual(["dangling", "dir", "ping", "pong", "self"]);
    expect(readdirSync(join(base, "dir"))).toEqual(["gone"]);
  });

  it("a FIFO at a key's path is no value: reads return at once, writes are refused, listings and clear skip it", async () => {
    const base = tempDir();
    execFileSync("mkfifo", [join(base, "pipe")]);
    const storage = createStorage({ driver: make(base) });
    expect(await storage.getItem("pipe")).toBeNull();
    expect(await storage.getItemStream("pipe")).toBeNull();
    expect(await storage.hasItem("pipe")).toBe(false);
    expect(await codeOf(() => storage.setItem("pipe", 1))).toBe("E_INVALID_KEY");
    expect(await codeOf(() => storage.setItem("pipe:below", 1))).toBe("E_INVALID_KEY");
    expect(await storage.getKeys()).toEqual([]);
    await storage.removeItem("pipe");
    await storage.clear();
    expect(lstatSync(join(base, "pipe")).isFIFO()).toBe(true);
  });

  it("keys that would land in a .git directory are refused on every operation, and the repository is untouched", async () => {
    const base = tempDir();
    execFileSync("git", ["init", "-q", base]);
    mkdirSync(join(base, "sub", ".git"), { recursive: true });
    writeFileSync(join(base, "sub", ".git", "HEAD"), "ref: refs/heads/main\n");
    const before = snapshot(base);
    const storage = createStorage({ driver: make(base) });
    const keys = [".git:config", ".GIT:config", ".Git. :config", ".git...:HEAD", "git~1:config", "GIT~1:config", ".g\u200cit:config", ".git\ufeff:HEAD", "sub:.git:HEAD", "a/.git/hooks/pre-commit", ".git"];
    for (const key of keys) {
      for (const action of [
        () => storage.setItem(key, "[core]\n\thooksPath = /tmp/evil\n"),
        () => storage.setItemRaw(key, new Uint8Array([1])),
        () => storage.setItemStream(key, chunks("x")),
        () => storage.getItem(key),
        () => storage.hasItem(key),
        () => storage.getMeta(key),
        () => storage.removeItem(key),
        () => storage.removeItem(key, { removeMeta: true }),
      ]) {
        expect(await codeOf(action), key).toBe("E_INVALID_KEY");
      }
    }
    expect(await codeOf(() => storage.getKeys(".git"))).toBe("E_INVALID_KEY");
    // Nor through a link inside base that leads into the repository.
    symlinkSync(join(base, ".git", "config"), join(base, "config-link"));
    symlinkSync(join(base, ".git"), join(base, "git-link"));
    for (const key of ["config-link", "git-link:config", "git-link:HEAD"]) {
      expect(await codeOf(() => storage.setItem(key, "x")), key).toBe("E_INVALID_KEY");
      expect(await codeOf(() => storage.getItem(key)), key).toBe("E_INVALID_KEY");
      expect(await codeOf(() => storage.removeItem(key)), key).toBe("E_INVALID_KEY");
    }
    expect(await storage.getKeys()).toEqual([]);
    expect(await codeOf(() => storage.clear(".git"))).toBe("E_INVALID_KEY");
    // Names that only start like .git are ordinary keys.
    await storage.setItem(".github:workflows:ci", 1);
    await storage.setItem(".gitignore", "node_modules");
    expect((await storage.getKeys()).sort()).toEqual([".github:workflows:ci", ".gitignore"]);
    await storage.clear();
    expect(snapshot(base)).toEqual({ ...before, "config-link": "link", "git-link": "link" });
    execFileSync("git", ["-C", base, "status", "--short"]);
  });

  it("a base that is or lies in a .git directory or a Git directory (bare repository) is E_INVALID_OPTION, before anything is made", async () => {
    const root = tempDir();
    const work = join(root, "work");
    const bare = join(root, "bare");
    execFileSync("git", ["init", "-q", work]);
    execFileSync("git", ["init", "-q", "--bare", bare]);
    symlinkSync(join(bare, "hooks"), join(root, "hooks-link"));
    symlinkSync(join(work, ".git"), join(root, "git-link"));
    const before = snapshot(root);
    const refused = [
      join(work, ".git"),
      join(work, ".git", "hooks"),
      join(work, ".git", "new", "dir"),
      join(work, ".GIT.", "x"),
      join(work, "sub", "git~1"),
      bare,
      join(bare, "hooks"),
      join(bare, "refs", "heads"),
      join(bare, "new", "dir"),
      join(root, "hooks-link"),
      join(root, "git-link", "info"),
    ];
    for (const base of refused) {
      expect(await codeOf(() => make(base)), base).toBe("E_INVALID_OPTION");
    }
    // Checked again at first use: base made a link into a repository after open.
    const late = join(root, "late");
    const driver = make(late);
    symlinkSync(join(bare, "hooks"), late);
    expect(await codeOf(() => createStorage({ driver }).setItem("pre-commit", "#!/bin/sh\nexit 1\n"))).toBe("E_INVALID_OPTION");
    rmSync(late);
    expect(snapshot(root)).toEqual(before);
    execFileSync("git", ["--git-dir", bare, "fsck", "--no-progress"]);
    // A work tree is a base like any other (its .git keys are refused), and keys named like a repository's files make no Git directory.
    const storage = createStorage({ driver: make(work) });
    await storage.setItem("notes:a", 1);
    const plain = join(root, "plain");
    const files = createStorage({ driver: make(plain) });
    for (const key of ["HEAD", "objects:a", "refs:b"]) await files.setItem(key, "x");
    expect((await createStorage({ driver: make(plain) }).getKeys()).sort()).toEqual(["HEAD", "objects:a", "refs:b"]);
  });

  it("declares its key limits from its base and holds keys right at them; one byte more is refused before anything is made", async () => {
    const base = tempDir();
    const driver = make(base);
    const limits = driver.keyLimits!;
    expect(limits.bytes).toBe(4095 - Buffer.byteLength(realpathSync(base)) - 1 - 64);
    expect(limits.segments).toBe(Math.min(1024, Math.floor((limits.bytes + 1) / 2)));
    const storage = createStorage({ driver });
    const atLimit = keyOfBytes(limits.bytes);
    const multibyte = `${"d".repeat(255)}:${"é".repeat(127)}`;
    expect(Buffer.byteLength(atLimit)).toBe(limits.bytes);
    for (const key of [atLimit, multibyte]) {
      await storage.setItem(key, "v", { ttl: 3_600_000 });
      expect(await storage.getItem(key)).toBe("v");
      expect((await storage.getMeta(key)).ttl).toBeGreaterThan(0);
      await storage.setItemStream(key, chunks("s"));
      expect(await storage.getItem(key)).toBe("s");
    }
    expect((await storage.getKeys()).sort()).toEqual([atLimit, multibyte].sort());
    await storage.removeItem(multibyte, { removeMeta: true });
    expect(await storage.getKeys()).toEqual([atLimit]);
    await storage.clear();
    expect(readdirSync(base)).toEqual([]);
    const refused = [
      keyOfBytes(limits.bytes + 1),
      "i".repeat(255), // a last segment whose sidecar would not fit
      `${"j".repeat(256)}:k`, // a segment past NAME_MAX
      `made:${"l".repeat(255)}`,
      Array.from({ length: limits.segments + 1 }, () => "m").join(":"),
      "lone:\ud800",
    ];
    for (const key of refused) {
      expect(await codeOf(() => storage.setItem(key, 1)), key.slice(0, 20)).toBe("E_INVALID_KEY");
      expect(await codeOf(() => storage.setItemStream(key, chunks("x"))), key.slice(0, 20)).toBe("E_INVALID_KEY");
    }
    expect(readdirSync(base)).toEqual([]);
  });

  it("a tree 1,000 directories deep is listed and cleared without recursion, and no walk goes deeper than a key can reach", async () => {
    const base = tempDir();
    const storage = createStorage({ driver: make(base) });
    const deep = Array.from({ length: 1000 }, () => "d").join(":");
    await storage.setItem(deep, 1);
    await storage.setItem("top", 1);
    expect((await storage.getKeys()).sort()).toEqual([deep, "top"]);
    await storage.clear();
    expect(readdirSync(base)).toEqual([]);
    // A tree made by another tool deeper than a key may reach: its keys at the limit are listed, nothing below.
    const { segments } = make(base).keyLimits!;
    const atLimit = Array.from({ length: segments }, () => "e");
    mkdirSync(join(base, ...atLimit.slice(0, -1), "e", "e"), { recursive: true });
    writeFileSync(join(base, ...atLimit.slice(0, -1), "value"), "1");
    writeFileSync(join(base, ...atLimit, "e", "too-deep"), "1");
    expect(await storage.getKeys()).toEqual([[...atLimit.slice(0, -1), "value"].join(":")]);
  });
});

describe("fs and fs-lite options", () => {
  it("refuse unknown options and options of the wrong type with E_INVALID_OPTION", () => {
    const base = tempDir();
    writeFileSync(join(base, "file"), "x");
    const cases: [string, () => unknown][] = [
      ["fs invalidation", () => fsDriver({ base, invalidation: true } as never)],
      ["fs-lite watchOptions", () => fsLite({ base, watchOptions: {} } as never)],
      ["fs readOnly", () => fsDriver({ base, readOnly: "yes" } as never)],
      ["fs-lite fsync", () => fsLite({ base, fsync: 1 } as never)],
      ["fs ignore", () => fsDriver({ base, ignore: "**/x" } as never)],
      ["fs-lite ignore", () => fsLite({ base, ignore: ["*.log"] } as never)],
      ["fs followSymlinks", () => fsDriver({ base, watchOptions: { followSymlinks: true } })],
      ["fs cwd", () => fsDriver({ base, watchOptions: { cwd: base } })],
      ["fs array", () => fsDriver([base] as never)],
      ["fs-lite base is a file", () => fsLite({ base: join(base, "file") })],
      ["fs base too long for any key", () => fsDriver({ base: join(base, ..."x".repeat(4100).match(/.{1,200}/g)!) })],
    ];
    for (const [name, make] of cases) {
      let code: string | undefined;
      try {
        make();
      } catch (error) {
        code = isStorageError(error) ? error.code : String(error);
      }
      expect(code, name).toBe("E_INVALID_OPTION");
    }
  });
});

describe("fs watch stays inside base", () => {
  it("reports nothing from behind a symlink out of base, nor links that lead out", async () => {
    const { outside, base } = { outside: tempDir("outside"), base: tempDir() };
    mkdirSync(join(outside, "dir"));
    symlinkSync(join(outside, "dir"), join(base, "link"));
    const storage = createStorage({ driver: fsDriver({ base }) });
    const events: string[] = [];
    const unwatch = await storage.watch((event, key) => events.push(`${event} ${key}`));
    writeFileSync(join(outside, "dir", "file"), "1");
    symlinkSync(join(outside, "dir", "file"), join(base, "file-link"));
    writeFileSync(join(outside, "target"), "1");
    mkdirSync(join(base, "in"));
    writeFileSync(join(base, "in", "marker"), "1");
    await expect.poll(() => events, { timeout: 10_000 }).toContain("update in:marker");
    expect(events.filter((event) => event.includes("link"))).toEqual([]);
    await unwatch();
  });
});

describe("clear while the tree changes under it", () => {
  it("stops with E_IO when a directory is moved out of base and swapped for a link mid-clear; nothing outside is removed", async () => {
    const base = tempDir();
    const outside = tempDir("outside");
    let armed = false;
    let swapped = false;
    // fs-lite asks its ignore function about each entry as clear() walks (and about each key's path as it is written): the swap happens right inside the walk.
    const ignore = (path: string) => {
      if (armed && !swapped && path.startsWith(join(base, "d") + "/")) {
        swapped = true;
        renameSync(join(base, "d"), join(outside, "moved"));
        symlinkSync(join(outside, "moved"), join(base, "d"));
      }
      return false;
    };
    const storage = createStorage({ driver: fsLite({ base, ignore }) });
    for (let i = 0; i < 5; i++) await storage.setItem(`d:f${i}`, i);
    armed = true;
    expect(await codeOf(() => storage.clear())).toBe("E_IO");
    expect(swapped).toBe(true);
    expect(readdirSync(join(outside, "moved")).sort()).toEqual(["f0", "f1", "f2", "f3", "f4"]);
  });
});

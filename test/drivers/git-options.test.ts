import { existsSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import git from "../../src/drivers/git.js";
import gitNotes from "../../src/drivers/git-notes.js";
import gitObjects, { gitObjectStore } from "../../src/drivers/git-objects.js";
import gitRefs from "../../src/drivers/git-refs.js";
import { createStorage, isStorageError } from "../../src/index.js";
import { git as gitCli, gitInitBare } from "../git/gitCli.js";
import { tempDir } from "../helpers/tempDir.js";

/** The StorageError a call throws (undefined when it returns). */
function thrown(run: () => unknown): { code: string; message: string } | undefined {
  try {
    run();
  } catch (error) {
    if (isStorageError(error)) return { code: error.code, message: error.message };
    throw error;
  }
  return undefined;
}

const fsck = (dir: string) => gitCli(dir, ["fsck", "--strict", "--no-progress"]);

describe("git drivers refuse options they do not know", () => {
  const cases: [string, (options: Record<string, unknown>) => unknown, string][] = [
    ["git", (options) => git(options as never), "dir, ref, author, message, fsync, fanout, lockTimeout, pollInterval, packLimit"],
    ["git-refs", (options) => gitRefs(options as never), "dir, prefix, fsync, lockTimeout, reflog, looseLimit"],
    ["git-notes", (options) => gitNotes(options as never), "dir, ref, namespace, fsync, looseLimit"],
    ["git-objects", (options) => gitObjects(options as never), "dir, ref, namespace, fsync, looseLimit, mode"],
  ];
  it.each(cases)("%s: E_INVALID_OPTION naming the known ones, before anything is created", (_name, open, known) => {
    const dir = join(tempDir("git-options"), "repo");
    const error = thrown(() => open({ dir, compression: true }));
    expect(error?.code).toBe("E_INVALID_OPTION");
    expect(error?.message).toContain("unknown option compression");
    expect(error?.message).toContain(`(known: ${known})`);
    expect(existsSync(dir)).toBe(false);
  });

  it("git-objects: compression, as the GitVan guide passes it, is refused; so is it for gitObjectStore, which has no mode", () => {
    const dir = gitInitBare("git-objects-compression");
    expect(thrown(() => gitObjects({ dir, compression: true } as never))?.code).toBe("E_INVALID_OPTION");
    expect(thrown(() => gitObjectStore({ dir, mode: "content" } as never))?.message).toContain("unknown option mode");
  });
});

describe("git driver author", () => {
  const bad: [string, unknown][] = [
    ["a NUL in the name", { name: "Ada\0Lovelace", email: "ada@example.com" }],
    ["< in the name", { name: "Ada <x", email: "ada@example.com" }],
    ["> in the email", { name: "Ada", email: "ada>@example.com" }],
    ["a newline in the name", { name: "Ada\nLovelace", email: "ada@example.com" }],
    ["a newline in the email", { name: "Ada", email: "ada@example.com\ncommitter evil" }],
    ["a NUL in the email", { name: "Ada", email: "ada@\0" }],
    ["an empty name", { name: "  ", email: "ada@example.com" }],
    ["no email", { name: "Ada" }],
    ["a number for a name", { name: 7, email: "x@y" }],
    ["a lone surrogate in the name", { name: "Ada \ud800", email: "ada@example.com" }],
    ["a string", "Ada <ada@example.com>"],
    ["null", null],
    ["an unknown field (a date, which commits would not use)", { name: "Ada", email: "ada@example.com", date: "2020-01-01T00:00:00Z" }],
    ["an array", ["Ada", "ada@example.com"]],
  ];
  it.each(bad)("%s is E_INVALID_OPTION at open, and no repository is created", (_what, author) => {
    const dir = join(tempDir("git-author"), "repo");
    const error = thrown(() => git({ dir, author: author as never }));
    expect(error?.code).toBe("E_INVALID_OPTION");
    expect(error?.message).toMatch(/^Invalid author /);
    expect(existsSync(dir)).toBe(false);
  });

  it("an unknown field is named with the known ones, as the git driver's error", () => {
    const author = { name: "Ada", email: "a@b", date: new Date(0) };
    const error = (() => {
      try {
        git({ dir: join(tempDir("git-author"), "repo"), author } as never);
      } catch (caught) {
        return caught;
      }
      return undefined;
    })();
    expect(isStorageError(error, "E_INVALID_OPTION")).toBe(true);
    expect((error as Error).message).toContain("unknown option date (known: name, email)");
    expect((error as { driver?: string }).driver).toBe("git");
  });

  it("an author with any other characters writes commits stock git accepts and reads back", async () => {
    const dir = gitInitBare("git-author-ok");
    const author = { name: "Åda \"the\" Lovelace (é) 🚀", email: "" };
    const storage = createStorage({ driver: git({ dir, author }) });
    await storage.setItem("k", 1);
    fsck(dir);
    expect(gitCli(dir, ["log", "-1", "--format=%an|%ae|%cn", "refs/stowage/default"])).toBe(`${author.name}||${author.name}`);
    await storage.dispose();
  });
});

describe("git driver numbers", () => {
  it("lockTimeout, pollInterval and packLimit out of range or of the wrong type are E_INVALID_OPTION", () => {
    const bad = [{ lockTimeout: -1 }, { lockTimeout: "5" }, { pollInterval: 0 }, { pollInterval: Number.POSITIVE_INFINITY }, { packLimit: 1.5 }, { packLimit: -1 }, { fsync: "yes" }, { fanout: 8 }];
    for (const options of bad) expect(thrown(() => git({ dir: gitInitBare("git-numbers"), ...(options as object) }))?.code, JSON.stringify(options)).toBe("E_INVALID_OPTION");
    expect(thrown(() => git({ dir: gitInitBare("git-numbers"), lockTimeout: 0, pollInterval: 1, packLimit: 0, fsync: false }))).toBeUndefined();
  });
});

describe("git-notes and git-objects ref and namespace", () => {
  it.each([
    ["git-notes", (options: Record<string, unknown>) => gitNotes(options as never)],
    ["git-objects", (options: Record<string, unknown>) => gitObjects(options as never)],
  ])("%s: a ref or namespace that is no string, an empty namespace or an invalid ref name is E_INVALID_OPTION", (_name, open) => {
    for (const options of [{ ref: 5 }, { namespace: 5 }, { namespace: "" }, { namespace: "a b" }, { ref: "refs/x", namespace: "a..b" }, { ref: "heads/x" }]) {
      const dir = join(tempDir("git-ref-options"), "repo");
      expect(thrown(() => open({ dir, ...options }))?.code, JSON.stringify(options)).toBe("E_INVALID_OPTION");
      expect(existsSync(dir)).toBe(false);
    }
  });
});

describe("git-refs prefix and lockTimeout", () => {
  it("a prefix that is no string (a TypeError before) and a bad lockTimeout are E_INVALID_OPTION", () => {
    for (const options of [{ prefix: 5 }, { prefix: "refs/x" }, { lockTimeout: -1 }, { lockTimeout: "1" }]) {
      const dir = join(tempDir("git-refs-options"), "repo");
      expect(thrown(() => gitRefs({ dir, ...(options as object) }))?.code, JSON.stringify(options)).toBe("E_INVALID_OPTION");
      expect(existsSync(dir)).toBe(false);
    }
  });
});

describe("git driver message", () => {
  it("a template holding NUL (commits git fsck --strict rejects) or no string is E_INVALID_OPTION at open", () => {
    for (const message of ["stowage\0{key}", 7]) {
      const dir = join(tempDir("git-message"), "repo");
      expect(thrown(() => git({ dir, message: message as string }))?.code).toBe("E_INVALID_OPTION");
      expect(existsSync(dir)).toBe(false);
    }
  });
});

describe("git-objects mounts on one repository", () => {
  it("two mounts with the same default options (the GitVan preset's): the second is refused until the first is disposed", async () => {
    const dir = gitInitBare("git-objects-mounts");
    const storage = createStorage();
    storage.mount("content", gitObjects({ dir }));
    const error = thrown(() => storage.mount("artifacts", gitObjects({ dir })));
    expect(error?.code).toBe("E_INVALID_OPTION");
    expect(error?.message).toMatch(/refs\/stowage\/objects of .* is already the index of another git-objects driver of this process: give each mount its own namespace/);
    // Another spelling of the same repository is the same index.
    expect(thrown(() => gitObjects({ dir: join(dir, "objects", "..") }))?.code).toBe("E_INVALID_OPTION");
    await storage.unmount("content", true);
    const again = gitObjects({ dir });
    await again.dispose?.();
    await again.dispose?.();
    await storage.dispose();
  });

  it("gitObjectStore holds the default index like a driver: neither opens it while the other has it; close or dispose releases it", async () => {
    const dir = gitInitBare("git-objects-store-claim");
    const driver = gitObjects({ dir, mode: "content" });
    expect(thrown(() => gitObjectStore({ dir }))?.code).toBe("E_INVALID_OPTION");
    await driver.dispose?.();
    const store = gitObjectStore({ dir });
    expect(thrown(() => gitObjectStore({ dir: join(dir, "objects", "..") }))?.code).toBe("E_INVALID_OPTION");
    expect(thrown(() => gitObjects({ dir }))?.code).toBe("E_INVALID_OPTION");
    // Its own namespace, or the ref passed explicitly, is no claim on the default index.
    gitObjectStore({ dir, namespace: "side" }).close();
    const shared = gitObjectStore({ dir, ref: "refs/stowage/objects" });
    const id = store.put("x");
    expect(shared.has(id)).toBe(true);
    shared.close();
    store.close();
    store.close();
    const again = gitObjects({ dir });
    await again.dispose?.();
  });

  it("a namespace gives each mount its own index: neither lists, reads nor clears the other's keys", async () => {
    const dir = gitInitBare("git-objects-namespaces");
    const storage = createStorage();
    storage.mount("content", gitObjects({ dir, namespace: "content" }));
    storage.mount("artifacts", gitObjects({ dir, namespace: "artifacts" }));
    await storage.setItem("content:a", "A");
    await storage.setItem("artifacts:b", "B");
    expect(await storage.getKeys("content")).toEqual(["content:a"]);
    expect(await storage.getKeys("artifacts")).toEqual(["artifacts:b"]);
    expect(await storage.getItem("content:b")).toBeNull();
    await storage.clear("content");
    expect(await storage.getItem("artifacts:b")).toBe("B");
    expect(gitCli(dir, ["for-each-ref", "--format=%(refname)", "refs/stowage/"]).split("\n")).toEqual([
      "refs/stowage/objects-artifacts",
      "refs/stowage/objects-content",
    ]);
    fsck(dir);
    expect(thrown(() => gitObjects({ dir, namespace: "" }))?.code).toBe("E_INVALID_OPTION");
    expect(thrown(() => gitObjects({ dir, namespace: "a..b" }))?.code).toBe("E_INVALID_OPTION");
    await storage.dispose();
  });

  it("the same ref passed explicitly shares one index on purpose", async () => {
    const dir = gitInitBare("git-objects-shared");
    const first = createStorage({ driver: gitObjects({ dir, ref: "refs/stowage/objects" }) });
    const second = createStorage({ driver: gitObjects({ dir, ref: "refs/stowage/objects" }) });
    await first.setItem("k", 1);
    expect(await second.getItem("k")).toBe(1);
    await first.dispose();
    await second.dispose();
  });
});

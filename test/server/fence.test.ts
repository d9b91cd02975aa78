import { describe, expect, it } from "vitest";
import { send, startServer } from "./helpers.js";

/*
 * Fenced writes through the server: X-Fence-Id (percent-encoded) and
 * X-Fence-Token on PUT and DELETE, applied by the server's storage on its
 * own data; E_FENCED answers 409. Hostile headers are refused with 400.
 */
describe("server: fenced writes", () => {
  const fenced = (id: string, token: string | number) => ({ "x-fence-id": id, "x-fence-token": token });

  it("applies the fence on its storage, and answers 409 E_FENCED to a lower token", async () => {
    const { url, storage } = await startServer();
    expect((await send(url, "PUT", "/a", { headers: fenced("locks%3Aa", 2), body: "one" })).status).toBeLessThan(300);
    const late = await send(url, "PUT", "/a", { headers: fenced("locks%3Aa", 1), body: "late" });
    expect(late.status).toBe(409);
    expect(JSON.parse(late.body.toString()).code).toBe("E_FENCED");
    expect((await send(url, "DELETE", "/a", { headers: fenced("locks%3Aa", 1) })).status).toBe(409);
    expect(await storage.getItem("a")).toBe("one");
    // The server's storage holds the record under the decoded id.
    expect(await storage.setItem("a", "x", { fence: { fenceId: "locks:a", token: 1 } }).catch((error: { code: string }) => error.code)).toBe("E_FENCED");
    expect((await send(url, "DELETE", "/a", { headers: fenced("locks%3Aa", 2) })).status).toBeLessThan(300);
    expect(await storage.hasItem("a")).toBe(false);
  });

  it("refuses malformed fences, half a fence, and a fence on a read or a base", async () => {
    const { url, storage } = await startServer();
    const bad: Record<string, string | number>[] = [
      { "x-fence-id": "a" },
      { "x-fence-token": 1 },
      fenced("a", 0),
      fenced("a", "01"),
      fenced("a", "1.5"),
      fenced("a", "-1"),
      fenced("a", "9007199254740993"),
      fenced("a", "1, 2"),
      fenced("a, b", 1),
      fenced("%zz", 1),
      fenced("a b", 1),
      fenced("x".repeat(4097), 1),
    ];
    for (const headers of bad) {
      const answer = await send(url, "PUT", "/k", { headers, body: "v" });
      expect(answer.status, JSON.stringify(headers)).toBe(400);
      expect(JSON.parse(answer.body.toString()).code).toBe("E_INVALID_OPTION");
    }
    expect((await send(url, "GET", "/k", { headers: fenced("a", 1) })).status).toBe(400);
    expect((await send(url, "HEAD", "/k", { headers: fenced("a", 1) })).status).toBe(400);
    expect((await send(url, "DELETE", "/base/", { headers: fenced("a", 1) })).status).toBe(400);
    expect(await storage.getKeys()).toEqual([]);
  });

  it("answers 501 E_UNSUPPORTED when its storage cannot fence", async () => {
    const inner = (await import("../../src/drivers/memory.js")).default();
    const driver = { name: "plain", hasItem: inner.hasItem, getItem: inner.getItem, getKeys: inner.getKeys, setItem: inner.setItem, removeItem: inner.removeItem };
    const { url, storage } = await startServer({ driver });
    const answer = await send(url, "PUT", "/k", { headers: fenced("a", 1), body: "v" });
    expect(answer.status).toBe(501);
    expect(await storage.hasItem("k")).toBe(false);
  });
});

describe("server: fence with conditions on DELETE", () => {
  const fenced = (id: string, token: number) => ({ "x-fence-id": id, "x-fence-token": token });

  it("refuses a fenced DELETE with If-None-Match (a stale token would get 200 for an absent key)", async () => {
    const { url, storage } = await startServer();
    await storage.setItem("other", "v", { fence: { fenceId: "l", token: 5 } });
    const answer = await send(url, "DELETE", "/absent", { headers: { ...fenced("l", 1), "if-none-match": "*" } });
    expect(answer.status).toBe(400);
    expect(JSON.parse(answer.body.toString()).code).toBe("E_INVALID_OPTION");
  });
});

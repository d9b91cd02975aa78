import { describe, expect, it } from "vitest";
import gitNotes from "../../src/drivers/git-notes.js";
import gitObjects from "../../src/drivers/git-objects.js";
import gitRefs from "../../src/drivers/git-refs.js";
import type { Driver } from "../../src/core/types.js";
import type { Maintainable } from "../../src/git/repo/autoMaintenance.js";
import { hashObject } from "../../src/git/index.js";
import { git } from "../git/gitCli.js";
import { tempDir } from "../helpers/tempDir.js";

type MaintainedDriver = Driver & Maintainable;

const DRIVERS: [string, (dir: string, looseLimit?: number) => MaintainedDriver][] = [
  ["git-refs", (dir, looseLimit) => gitRefs({ dir, looseLimit })],
  ["git-notes", (dir, looseLimit) => gitNotes({ dir, looseLimit })],
  ["git-objects", (dir, looseLimit) => gitObjects({ dir, looseLimit })],
];

const WRITES = 200;
const value = (i: number) => `value number ${i}`;

function counts(dir: string): { loose: number; packed: number } {
  const text = git(dir, ["count-objects", "-v"]);
  const field = (name: string) => Number(new RegExp(`^${name}: (\\d+)$`, "m").exec(text)![1]);
  return { loose: field("count"), packed: field("in-pack") };
}

describe.each(DRIVERS)("%s maintenance", (_name, open) => {
  it("packs its loose objects by itself once they pass looseLimit, estimated as git gc --auto does (objects/17)", () => {
    // The estimate counts objects/17: one of the first values' blobs must land there for the run to start early.
    expect(
      Array.from({ length: 64 }, (_, i) => hashObject("blob", Buffer.from(value(i)))).some((id) => id.startsWith("17")),
    ).toBe(true);
    const dir = tempDir("git-auto-maintenance");
    const driver = open(dir, 1);
    const unmaintained = tempDir("git-no-maintenance");
    const plain = open(unmaintained, 0);
    for (let i = 0; i < WRITES; i++) {
      driver.setItem!(`k${i}`, value(i), {});
      plain.setItem!(`k${i}`, value(i), {});
    }
    // The check after the 64th write found objects/17 in use and packed everything written so far.
    const { loose, packed } = counts(dir);
    expect(packed - counts(unmaintained).packed).toBeGreaterThanOrEqual(64);
    expect(counts(unmaintained).loose - loose).toBeGreaterThanOrEqual(64);
    for (let i = 0; i < WRITES; i++) expect(driver.getItem(`k${i}`, {})).toBe(value(i));
    git(dir, ["fsck", "--strict"]);
    void driver.dispose?.();
    void plain.dispose?.();
  });

  it("leaves loose objects alone with looseLimit 0, and maintenance() packs them on request", () => {
    const dir = tempDir("git-manual-maintenance");
    const driver = open(dir, 0);
    for (let i = 0; i < WRITES; i++) driver.setItem!(`k${i}`, value(i), {});
    const before = counts(dir).loose;
    expect(before).toBeGreaterThanOrEqual(WRITES);
    const result = driver.maintenance({ prune: true, grace: 0 });
    expect(result.looseObjectsPacked + result.looseObjectsPruned).toBe(before);
    expect(counts(dir).loose).toBe(0);
    for (let i = 0; i < WRITES; i++) expect(driver.getItem(`k${i}`, {})).toBe(value(i));
    git(dir, ["fsck", "--strict"]);
    void driver.dispose?.();
  });

  it("refuses a looseLimit that is not an integer >= 0", () => {
    expect(() => open(tempDir("git-bad-limit"), -1)).toThrow(/looseLimit/);
    expect(() => open(tempDir("git-bad-limit"), 1.5)).toThrow(/looseLimit/);
  });
});

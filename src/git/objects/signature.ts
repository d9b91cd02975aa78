import { corrupt, gitError } from "../errors.js";

/** Name and email, as written in commits, tags and reflog lines. */
export interface Identity {
  name: string;
  email: string;
}

/** Who and when, as in a commit's author/committer or a tag's tagger line. */
export interface Signature {
  name: string;
  email: string;
  /** Seconds since the Unix epoch. */
  timestamp: number;
  /** Git's `+hhmm` / `-hhmm` offset, kept verbatim (`-0000` differs from `+0000`). */
  timezone: string;
}

/** `+hhmm` for a UTC offset in minutes east (what `Date#getTimezoneOffset` negated gives). */
export function formatTimezone(minutesEast: number): string {
  const sign = minutesEast < 0 ? "-" : "+";
  const abs = Math.abs(minutesEast);
  return `${sign}${String(Math.floor(abs / 60)).padStart(2, "0")}${String(abs % 60).padStart(2, "0")}`;
}

/** A signature for now, in this machine's timezone. */
export function signatureNow(name: string, email: string, date: Date = new Date()): Signature {
  return { name, email, timestamp: Math.floor(date.getTime() / 1000), timezone: formatTimezone(-date.getTimezoneOffset()) };
}

// `<`, `>` and a newline end the name or email early in Git's ident line; NUL fails `git fsck --strict`.
const IDENT_BREAKERS = /[<>\n\0]/;
const LONE_SURROGATE = /\p{Surrogate}/u;

/** Why Git would not read a name and email back as written (`<`, `>`, newline, NUL), or undefined. */
function identityProblem(name: string, email: string): string | undefined {
  return IDENT_BREAKERS.test(name) || IDENT_BREAKERS.test(email) ? "name and email must not hold <, >, a newline or NUL" : undefined;
}

/**
 * Checks an identity given as an option before anything is written with it:
 * name and email are strings Git reads back as written (no `<`, `>`,
 * newline, NUL or lone surrogate), the name is not empty (Git refuses an
 * empty name when it commits), and it has no other fields (a `date` would be
 * ignored: commits are dated when they are made).
 *
 * @param what the option, for the message (`author`)
 * @throws StorageError `E_INVALID_OPTION`
 */
export function checkIdentity(identity: unknown, what: string): Identity {
  if (typeof identity === "object" && identity !== null) checkFields(identity, what);
  const { name, email } = (typeof identity === "object" && identity !== null ? identity : {}) as Record<string, unknown>;
  const problem = typeof name === "string" && typeof email === "string" ? optionProblem(name, email) : "it must be { name: string, email: string }";
  if (problem !== undefined) throw gitError("E_INVALID_OPTION", `Invalid ${what} ${describe(identity)}: ${problem}`);
  return { name: name as string, email: email as string };
}

/** Refuses an array, and fields of an identity other than name and email, in the words unknown options are refused with. */
function checkFields(identity: object, what: string): void {
  const unknown = Object.keys(identity).filter((name) => name !== "name" && name !== "email");
  const problem = Array.isArray(identity)
    ? `[${what}] options must be an object, got an array`
    : unknown.length > 0
      ? `[${what}] unknown option${unknown.length > 1 ? "s" : ""} ${unknown.join(", ")} (known: name, email)`
      : undefined;
  if (problem !== undefined) throw gitError("E_INVALID_OPTION", `Invalid ${what} ${describe(identity)}: ${problem}`);
}

function optionProblem(name: string, email: string): string | undefined {
  if (name.trim() === "") return "the name is empty";
  if (LONE_SURROGATE.test(name) || LONE_SURROGATE.test(email)) return "name and email must be valid Unicode (UTF-8 cannot carry a lone surrogate)";
  return identityProblem(name, email);
}

function describe(value: unknown): string {
  try {
    return JSON.stringify(value) ?? String(value);
  } catch (error) {
    // A cyclic or BigInt-holding object has no JSON text; its type is enough for the message.
    return `(an unprintable ${typeof value}: ${error instanceof Error ? error.message : String(error)})`;
  }
}

/** `Name <email> 1700000000 +0100`; `E_CORRUPT` for a name or email Git would not read back as written. */
export function formatSignature(sig: Signature): string {
  const problem = identityProblem(sig.name, sig.email);
  if (problem !== undefined) throw corrupt(`Invalid identity ${JSON.stringify(`${sig.name} <${sig.email}>`)}: ${problem}`);
  return `${sig.name} <${sig.email}> ${sig.timestamp} ${sig.timezone}`;
}

/** Parses `Name <email> 1700000000 +0100`. */
export function parseSignature(line: string): Signature {
  const lt = line.indexOf("<");
  const gt = line.indexOf(">", lt + 1);
  const when = /^ (\d+) ([+-]\d{4})$/.exec(line.slice(gt + 1));
  if (lt < 0 || gt < 0 || when === null) throw corrupt(`Bad identity line: ${JSON.stringify(line)}`);
  return {
    name: line.slice(0, lt > 0 && line[lt - 1] === " " ? lt - 1 : lt),
    email: line.slice(lt + 1, gt),
    timestamp: Number(when[1]),
    timezone: when[2] as string,
  };
}

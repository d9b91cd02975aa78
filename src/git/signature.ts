import { corrupt } from "./errors.js";

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

/** `Name <email> 1700000000 +0100`. */
export function formatSignature(sig: Signature): string {
  if (/[<>\n]/.test(sig.name) || /[<>\n]/.test(sig.email)) {
    throw corrupt(`Invalid identity: ${JSON.stringify(`${sig.name} <${sig.email}>`)}`);
  }
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

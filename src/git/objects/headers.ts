import { isUtf8 } from "node:buffer";

/** A commit's or tag's header lines and message. */
export interface HeaderBlock {
  /** Headers in order; a multi-line value (gpgsig, mergetag) has its lines joined by `\n`. */
  headers: Array<[string, string]>;
  message: string;
  /** The message's bytes, only when they are not valid UTF-8. */
  messageBytes?: Buffer;
}

/** Splits a commit or tag body into headers (with continuation lines) and message. */
export function decodeHeaders(body: Buffer): HeaderBlock {
  const blank = body.indexOf("\n\n");
  const headEnd = blank < 0 ? body.length : blank;
  const headers: Array<[string, string]> = [];
  for (const line of body.toString("utf8", 0, headEnd).split("\n")) {
    const last = headers[headers.length - 1];
    if (line.startsWith(" ") && last !== undefined) {
      last[1] += `\n${line.slice(1)}`;
      continue;
    }
    const space = line.indexOf(" ");
    headers.push(space < 0 ? [line, ""] : [line.slice(0, space), line.slice(space + 1)]);
  }
  const messageRaw = blank < 0 ? Buffer.alloc(0) : body.subarray(blank + 2);
  const block: HeaderBlock = { headers, message: messageRaw.toString("utf8") };
  if (!isUtf8(messageRaw)) block.messageBytes = Buffer.from(messageRaw);
  return block;
}

/** Joins headers and message back into a body (continuation lines prefixed by a space). */
export function encodeHeaders(headers: ReadonlyArray<readonly [string, string]>, message: string, messageBytes?: Buffer): Buffer {
  let head = "";
  for (const [name, value] of headers) head += `${name} ${value.replaceAll("\n", "\n ")}\n`;
  return Buffer.concat([Buffer.from(`${head}\n`, "utf8"), messageBytes ?? Buffer.from(message, "utf8")]);
}

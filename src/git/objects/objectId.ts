import { createHash } from "node:crypto";
import { corrupt } from "../errors.js";

/** A SHA-1 object id as 40 lowercase hex digits. */
export type ObjectId = string;

/** The four object types Git stores. */
export type ObjectType = "blob" | "tree" | "commit" | "tag";

/** An object as Git stores it: its type and its body (the bytes after the header). */
export interface GitObject {
  type: ObjectType;
  body: Buffer;
}

/** The id of no object: the "old value" of a ref that did not exist. */
export const ZERO_ID: ObjectId = "0".repeat(40);

const OBJECT_ID = /^[0-9a-f]{40}$/;
const TYPES: ReadonlySet<string> = new Set(["blob", "tree", "commit", "tag"]);

/** True for a 40-digit lowercase hex string. */
export function isObjectId(value: string): boolean {
  return OBJECT_ID.test(value);
}

/** True when `name` is one of the four object types. */
export function isObjectType(name: string): name is ObjectType {
  return TYPES.has(name);
}

/** The loose-object header `<type> <size>\0`, which also prefixes the hashed bytes. */
export function objectHeader(type: ObjectType, size: number): Buffer {
  return Buffer.from(`${type} ${size}\0`, "latin1");
}

/** The id Git gives an object: SHA-1 of header and body (as `git hash-object`). */
export function hashObject(type: ObjectType, body: Uint8Array): ObjectId {
  return createHash("sha1").update(objectHeader(type, body.length)).update(body).digest("hex");
}

/** Header and body in one buffer: what a loose object deflates. */
export function frameObject(type: ObjectType, body: Uint8Array): Buffer {
  return Buffer.concat([objectHeader(type, body.length), body]);
}

/** Splits `<type> <size>\0<body>`, checking type and size; `E_CORRUPT` otherwise. */
export function unframeObject(framed: Buffer, what: string): GitObject {
  const space = framed.indexOf(0x20);
  const nul = framed.indexOf(0, space + 1);
  if (space < 0 || nul < 0 || space > 6 || nul - space > 21) throw corrupt(`Bad object header in ${what}`);
  const type = framed.toString("latin1", 0, space);
  const sizeText = framed.toString("latin1", space + 1, nul);
  if (!isObjectType(type) || !/^(0|[1-9][0-9]*)$/.test(sizeText)) throw corrupt(`Bad object header in ${what}`);
  const body = framed.subarray(nul + 1);
  if (body.length !== Number(sizeText)) throw corrupt(`Object ${what} is ${body.length} bytes, its header says ${sizeText}`);
  return { type, body };
}

import { corrupt } from "../errors.js";
import { decodeHeaders, encodeHeaders } from "./headers.js";
import { isObjectId, isObjectType, type ObjectId, type ObjectType } from "./objectId.js";
import { formatSignature, parseSignature, type Signature } from "./signature.js";

/** An annotated tag object. */
export interface Tag {
  object: ObjectId;
  type: ObjectType;
  tag: string;
  /** Absent in some very old tags. */
  tagger?: Signature;
  /** Headers after `tagger`, in order, passed through intact. */
  extraHeaders: Array<[string, string]>;
  /** The message, with a PGP signature (if any) at its end, as Git stores it. */
  message: string;
  /** The message's bytes, set only when they are not valid UTF-8. */
  messageBytes?: Buffer;
}

/**
 * Parses a tag body.
 * @throws StorageError `E_CORRUPT` for a tag without an object, type or tag line
 */
export function decodeTag(body: Buffer): Tag {
  const { headers, message, messageBytes } = decodeHeaders(body);
  const [object, type, name] = headers;
  if (object?.[0] !== "object" || !isObjectId(object[1]) || type?.[0] !== "type" || !isObjectType(type[1]) || name?.[0] !== "tag") {
    throw corrupt("Tag lacks an object, type or tag line");
  }
  const hasTagger = headers[3]?.[0] === "tagger";
  const tag: Tag = { object: object[1], type: type[1], tag: name[1], extraHeaders: headers.slice(hasTagger ? 4 : 3), message };
  if (hasTagger) tag.tagger = parseSignature((headers[3] as [string, string])[1]);
  if (messageBytes !== undefined) tag.messageBytes = messageBytes;
  return tag;
}

/** Encodes a tag body exactly as Git lays it out. */
export function encodeTag(tag: Tag): Buffer {
  const headers: Array<[string, string]> = [
    ["object", tag.object],
    ["type", tag.type],
    ["tag", tag.tag],
  ];
  if (tag.tagger !== undefined) headers.push(["tagger", formatSignature(tag.tagger)]);
  headers.push(...tag.extraHeaders);
  return encodeHeaders(headers, tag.message, tag.messageBytes);
}

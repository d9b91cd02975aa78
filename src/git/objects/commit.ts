import { corrupt } from "../errors.js";
import { decodeHeaders, encodeHeaders } from "./headers.js";
import { isObjectId, type ObjectId } from "./objectId.js";
import { formatSignature, parseSignature, type Signature } from "./signature.js";

/** A commit object. */
export interface Commit {
  tree: ObjectId;
  parents: ObjectId[];
  author: Signature;
  committer: Signature;
  /** Headers after `committer` (encoding, mergetag, gpgsig, ...), in order, passed through intact. */
  extraHeaders: Array<[string, string]>;
  /** Everything after the blank line that ends the headers. */
  message: string;
  /** The message's bytes, set only when they are not valid UTF-8. */
  messageBytes?: Buffer;
}

function objectIdHeader(name: string, value: string | undefined): ObjectId {
  if (value === undefined || !isObjectId(value)) throw corrupt(`Commit has a bad ${name} line`);
  return value;
}

/**
 * Parses a commit body.
 * @throws StorageError `E_CORRUPT` for a commit without a valid tree, parent, author or committer line
 */
export function decodeCommit(body: Buffer): Commit {
  const { headers, message, messageBytes } = decodeHeaders(body);
  let at = 0;
  const take = (name: string): string | undefined => (headers[at]?.[0] === name ? (headers[at++] as [string, string])[1] : undefined);
  const tree = objectIdHeader("tree", take("tree"));
  const parents: ObjectId[] = [];
  for (let parent = take("parent"); parent !== undefined; parent = take("parent")) parents.push(objectIdHeader("parent", parent));
  const author = take("author");
  const committer = take("committer");
  if (author === undefined || committer === undefined) throw corrupt("Commit lacks an author or committer line");
  const commit: Commit = {
    tree,
    parents,
    author: parseSignature(author),
    committer: parseSignature(committer),
    extraHeaders: headers.slice(at),
    message,
  };
  if (messageBytes !== undefined) commit.messageBytes = messageBytes;
  return commit;
}

/**
 * Encodes a commit body exactly as Git lays it out.
 * @throws StorageError `E_CORRUPT` for an author or committer Git could not read back
 */
export function encodeCommit(commit: Commit): Buffer {
  const headers: Array<[string, string]> = [["tree", commit.tree]];
  for (const parent of commit.parents) headers.push(["parent", parent]);
  headers.push(["author", formatSignature(commit.author)], ["committer", formatSignature(commit.committer)], ...commit.extraHeaders);
  return encodeHeaders(headers, commit.message, commit.messageBytes);
}

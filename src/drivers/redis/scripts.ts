import { createHash } from "node:crypto";

/**
 * The Lua scripts the driver runs: a guard is checked and the write it
 * guards is made in one script, so the two are atomic on the server.
 */

export interface Script {
  lua: string;
  sha: string;
}

function script(lua: string): Script {
  return { lua, sha: createHash("sha1").update(lua).digest("hex") };
}

// Guards: "" none, "*" the key must be absent, else the sha1 of the stored bytes (the etag).
const GUARD_FAILS = `local function fails(key, guard)
  if guard == '' then return false end
  local current = redis.call('GET', key)
  if guard == '*' then return current ~= false end
  return (not current) or redis.sha1hex(current) ~= guard
end
`;

// KEYS[1]; ARGV: value, px ('' none), guard, channel ('' none), message. Returns 1, or 0 when the guard fails.
export const WRITE = script(`${GUARD_FAILS}
if fails(KEYS[1], ARGV[3]) then return 0 end
if ARGV[2] == '' then redis.call('SET', KEYS[1], ARGV[1]) else redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) end
if ARGV[4] ~= '' then redis.call('PUBLISH', ARGV[4], ARGV[5]) end
return 1`);

// KEYS[1]; ARGV: guard, channel, message. Returns keys removed (0 or 1), or -1 when the guard fails.
export const REMOVE = script(`${GUARD_FAILS}
if fails(KEYS[1], ARGV[1]) then return -1 end
local removed = redis.call('UNLINK', KEYS[1])
if removed == 1 and ARGV[2] ~= '' then redis.call('PUBLISH', ARGV[2], ARGV[3]) end
return removed`);

// KEYS[1]. Returns nil, or {etag, pttl, size}.
export const META = script(`local value = redis.call('GET', KEYS[1])
if not value then return nil end
return {redis.sha1hex(value), redis.call('PTTL', KEYS[1]), string.len(value)}`);

// KEYS: one per operation; ARGV[1] channel, then (kind, a, b) per operation: check (c, guard),
// set (s, value, px) or remove (r), then the sender (see watch.ts for the messages). Every check runs
// before any write; returns the 1-based index of the failed check, or 0 once everything is written.
export const BATCH = script(`${GUARD_FAILS}
for i = 1, #KEYS do
  if ARGV[3 * i - 1] == 'c' and fails(KEYS[i], ARGV[3 * i]) then return i end
end
local updated, removed = {}, {}
for i = 1, #KEYS do
  local kind = ARGV[3 * i - 1]
  if kind == 's' then
    if ARGV[3 * i + 1] == '' then redis.call('SET', KEYS[i], ARGV[3 * i])
    else redis.call('SET', KEYS[i], ARGV[3 * i], 'PX', ARGV[3 * i + 1]) end
    updated[#updated + 1] = redis.sha1hex(ARGV[3 * i]) .. KEYS[i]
  elseif kind == 'r' and redis.call('UNLINK', KEYS[i]) == 1 then
    removed[#removed + 1] = KEYS[i]
  end
end
if ARGV[1] ~= '' then
  local sender = ARGV[#ARGV]
  if #updated > 0 then redis.call('PUBLISH', ARGV[1], 'u' .. sender .. table.concat(updated, '\\0')) end
  if #removed > 0 then redis.call('PUBLISH', ARGV[1], 'r' .. sender .. table.concat(removed, '\\0')) end
end
return 0`);

// KEYS: the keys; ARGV[1] channel, ARGV[i + 1] the value of KEYS[i], then the sender. Plain writes
// without guards or TTL: MSET, in slices that stay under Lua's limit on unpacked values.
export const SET_MANY = script(`local slice = {}
for i = 1, #KEYS do
  slice[#slice + 1] = KEYS[i]
  slice[#slice + 1] = ARGV[i + 1]
  if #slice == 2000 or i == #KEYS then
    redis.call('MSET', unpack(slice))
    slice = {}
  end
end
if ARGV[1] ~= '' then
  local updated = {}
  for i = 1, #KEYS do updated[i] = redis.sha1hex(ARGV[i + 1]) .. KEYS[i] end
  redis.call('PUBLISH', ARGV[1], 'u' .. ARGV[#ARGV] .. table.concat(updated, '\\0'))
end
return 0`);

// Locks' fast path (LockTakingDriver.takeLock). KEYS[1] the lock record; ARGV: the holder's JSON, now (ms),
// channel ('' none), sender. Takes the lock when the record's holder is null or expired at now, writing
// the JSON text JSON.stringify gives the record: returns {1, token, etag}; {0} while held; {-1} (declined,
// nothing written) for an absent record (the first one is written through the storage's serializer) or
// text that is not a lock record as JSON.stringify writes it (it must open with {"token":<n>,"holder":).
export const TAKE_LOCK = script(`local current = redis.call('GET', KEYS[1])
if not current then return {-1} end
local token
-- A released record (the common case) is matched as text: no cjson decode for it.
local digits = string.match(current, '^{"token":(%d+),"holder":null}$')
if digits then
  token = tonumber(digits)
  if token >= 9007199254740991 or string.format('%d', token) ~= digits then return {-1} end
else
  local ok, record = pcall(cjson.decode, current)
  if not ok or type(record) ~= 'table' or type(record.token) ~= 'number' then return {-1} end
  token = record.token
  if token < 0 or token % 1 ~= 0 or token >= 9007199254740991 then return {-1} end
  local opening = '{"token":' .. string.format('%d', token) .. ',"holder":'
  if string.sub(current, 1, #opening) ~= opening then return {-1} end
  local holder = record.holder
  if holder == nil then return {-1} end
  if holder ~= cjson.null then
    if type(holder) ~= 'table' or type(holder.expiresAt) ~= 'number' then return {-1} end
    if holder.expiresAt > tonumber(ARGV[2]) then return {0} end
  end
end
local text = '{"token":' .. string.format('%d', token + 1) .. ',"holder":' .. ARGV[1] .. '}'
redis.call('SET', KEYS[1], text)
local etag = redis.sha1hex(text)
if ARGV[3] ~= '' then redis.call('PUBLISH', ARGV[3], 'u' .. ARGV[4] .. etag .. KEYS[1]) end
return {1, token + 1, etag}`);

// Locks' release fast path (LockTakingDriver.releaseLock). KEYS[1] the lock record; ARGV: the text the
// take wrote, the released record's text, channel ('' none), sender. Writes ARGV[2] (no expiry, as the take)
// only while the record is exactly ARGV[1]: returns 1, else 0 and nothing written.
export const RELEASE_LOCK = script(`if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2])
if ARGV[3] ~= '' then redis.call('PUBLISH', ARGV[3], 'u' .. ARGV[4] .. redis.sha1hex(ARGV[2]) .. KEYS[1]) end
return 1`);

export type BatchOp = { key: string; kind: "c" | "s" | "r"; value: string | Buffer; px: string };

/** Whether a script call failed only because the server lost its script cache (a restart, SCRIPT FLUSH). */
export function isNoScript(error: unknown): boolean {
  return error instanceof Error && error.message.startsWith("NOSCRIPT");
}

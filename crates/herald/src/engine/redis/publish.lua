-- Publishes one publication of a channel, appending it to the channel's stream first when the
-- channel keeps history, all in one step: no other client sees the stream between the offset
-- being taken and the publication going out, so PUB/SUB carries offsets in order.
--
-- KEYS[1] stream, KEYS[2] meta hash, KEYS[3] idempotency key (same hash tag; unused if ARGV[8] is "")
-- ARGV[1] PUB/SUB channel       ARGV[2] data          ARGV[3] publisher info (JSON or "")
-- ARGV[4] tags (JSON or "")     ARGV[5] history size (0: not kept)
-- ARGV[6] history ttl, ms       ARGV[7] meta ttl, ms (0: forever)
-- ARGV[8] "1" when an idempotency key is used        ARGV[9] idempotency window, ms
-- ARGV[10] epoch for a new stream                     ARGV[11] version (0: none)
-- ARGV[12] version epoch        ARGV[13] delta flag ("1"/"0")
--
-- Returns {status, offset, epoch, time_ms}; status is "ok", "duplicate" (the first
-- publication's offset and epoch) or "suppressed" (the stream's top).

local function field(s)
  return string.len(s) .. ":" .. s
end

if ARGV[8] == "1" then
  local first = redis.call("GET", KEYS[3])
  if first then
    local sep = string.find(first, ":", 1, true)
    return {"duplicate", string.sub(first, 1, sep - 1), string.sub(first, sep + 1), "0"}
  end
end

local now = redis.call("TIME")
local now_ms = string.format("%d", tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000))

local function remember(offset, epoch)
  if ARGV[8] == "1" then
    redis.call("SET", KEYS[3], offset .. ":" .. epoch, "PX", ARGV[9])
  end
end

if ARGV[5] == "0" then
  redis.call("PUBLISH", ARGV[1],
    "p" .. field("0") .. field("") .. field(ARGV[13]) .. field(now_ms) .. field(ARGV[2]) ..
    field(ARGV[3]) .. field(ARGV[4]))
  remember("0", "")
  return {"ok", "0", "", now_ms}
end

local meta = redis.call("HMGET", KEYS[2], "e", "s", "v", "ve")
local epoch = meta[1]
local top = meta[2]
if not epoch then
  -- A new stream (or one whose meta expired: its leftovers belong to a lost epoch).
  epoch = ARGV[10]
  top = "0"
  redis.call("DEL", KEYS[1])
  redis.call("HSET", KEYS[2], "e", epoch, "s", "0")
end

local version = tonumber(ARGV[11])
if version > 0 then
  local last = tonumber(meta[3] or "0")
  local last_epoch = meta[4] or ""
  if (ARGV[12] == "" or ARGV[12] == last_epoch) and version <= last then
    return {"suppressed", top, epoch, now_ms}
  end
  redis.call("HSET", KEYS[2], "v", ARGV[11], "ve", ARGV[12])
elseif meta[3] then
  redis.call("HDEL", KEYS[2], "v", "ve")
end

local offset = redis.call("HINCRBY", KEYS[2], "s", 1)
local id = string.format("%d", offset)
redis.call("XADD", KEYS[1], "MAXLEN", ARGV[5], id .. "-0",
  "d", ARGV[2], "i", ARGV[3], "t", ARGV[4], "m", now_ms)
redis.call("PEXPIRE", KEYS[1], ARGV[6])
if ARGV[7] == "0" then
  redis.call("PERSIST", KEYS[2])
else
  redis.call("PEXPIRE", KEYS[2], ARGV[7])
end
redis.call("PUBLISH", ARGV[1],
  "p" .. field(id) .. field(epoch) .. field(ARGV[13]) .. field(now_ms) .. field(ARGV[2]) ..
  field(ARGV[3]) .. field(ARGV[4]))
remember(id, epoch)
return {"ok", id, epoch, now_ms}

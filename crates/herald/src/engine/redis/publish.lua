-- Publishes a batch of publications (one or more, of any channels whose keys share a hash slot),
-- in order. Each publication is appended to its channel's stream first when the channel keeps
-- history, all in one step: no other client sees the stream between the offset being taken and
-- the publication going out, so PUB/SUB carries offsets in order. One call for many
-- publications because each call has a cost of its own, in Redis (~11 µs for a call of one
-- publication against ~8.5 µs a publication in a call of 8 or more) and in the node (a command
-- to write, a reply to read and dispatch); the broker batches what queued while its previous
-- calls were in flight (see publish_batch.rs).
--
-- Publication i (from 0) uses KEYS[3i+1..3i+3] and ARGV[13i+1..13i+13]:
-- KEYS[1] stream, KEYS[2] meta hash, KEYS[3] idempotency key (same hash tag; unused if ARGV[8] is "")
-- ARGV[1] PUB/SUB channel       ARGV[2] data          ARGV[3] publisher info (JSON or "")
-- ARGV[4] tags (JSON or "")     ARGV[5] history size (0: not kept)
-- ARGV[6] history ttl, ms       ARGV[7] meta ttl, ms (0: forever)
-- ARGV[8] "1" when an idempotency key is used        ARGV[9] idempotency window, ms
-- ARGV[10] epoch for a new stream                     ARGV[11] version (0: none)
-- ARGV[12] version epoch        ARGV[13] delta flag ("1"/"0")
--
-- Returns one {status, offset, epoch, time_ms} per publication, in order; status is "ok",
-- "duplicate" (the first publication's offset and epoch), "suppressed" (the stream's top) or
-- "error" (offset is then the error: that publication failed where it stood, as a script of its
-- own would have, and the others of the batch are unaffected).

local KEYS_PER, ARGS_PER = 3, 13

local function field(s)
  return string.len(s) .. ":" .. s
end

-- One clock reading for the whole call: its publications are published in one step.
local now = redis.call("TIME")
local now_ms = string.format("%d", tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000))

-- Publication i: keys from KEYS[k + 1], arguments from ARGV[a + 1].
local function publish(k, a)
  local stream, meta_key, idem_key = KEYS[k + 1], KEYS[k + 2], KEYS[k + 3]
  local channel, data, info, tags, size, ttl, meta_ttl, keyed, window, new_epoch, version_arg,
    version_epoch, delta = unpack(ARGV, a + 1, a + ARGS_PER)

  if keyed == "1" then
    local first = redis.call("GET", idem_key)
    if first then
      local sep = string.find(first, ":", 1, true)
      return {"duplicate", string.sub(first, 1, sep - 1), string.sub(first, sep + 1), "0"}
    end
  end

  local function remember(offset, epoch)
    if keyed == "1" then
      redis.call("SET", idem_key, offset .. ":" .. epoch, "PX", window)
    end
  end

  if size == "0" then
    redis.call("PUBLISH", channel,
      "p" .. field("0") .. field("") .. field(delta) .. field(now_ms) .. field(data) ..
      field(info) .. field(tags))
    remember("0", "")
    return {"ok", "0", "", now_ms}
  end

  local meta = redis.call("HMGET", meta_key, "e", "s", "v", "ve")
  local epoch = meta[1]
  local top = meta[2]
  if not epoch then
    -- A new stream (or one whose meta expired: its leftovers belong to a lost epoch).
    epoch = new_epoch
    top = "0"
    redis.call("DEL", stream)
    redis.call("HSET", meta_key, "e", epoch, "s", "0")
  end

  local version = tonumber(version_arg)
  if version > 0 then
    local last = tonumber(meta[3] or "0")
    local last_epoch = meta[4] or ""
    if (version_epoch == "" or version_epoch == last_epoch) and version <= last then
      return {"suppressed", top, epoch, now_ms}
    end
    redis.call("HSET", meta_key, "v", version_arg, "ve", version_epoch)
  elseif meta[3] then
    redis.call("HDEL", meta_key, "v", "ve")
  end

  local offset = redis.call("HINCRBY", meta_key, "s", 1)
  local id = string.format("%d", offset)
  redis.call("XADD", stream, "MAXLEN", size, id .. "-0",
    "d", data, "i", info, "t", tags, "m", now_ms)
  redis.call("PEXPIRE", stream, ttl)
  if meta_ttl == "0" then
    redis.call("PERSIST", meta_key)
  else
    redis.call("PEXPIRE", meta_key, meta_ttl)
  end
  redis.call("PUBLISH", channel,
    "p" .. field(id) .. field(epoch) .. field(delta) .. field(now_ms) .. field(data) ..
    field(info) .. field(tags))
  remember(id, epoch)
  return {"ok", id, epoch, now_ms}
end

local count = #KEYS / KEYS_PER
if count ~= math.floor(count) or #ARGV ~= count * ARGS_PER then
  return redis.error_reply("publish.lua: " .. #KEYS .. " keys and " .. #ARGV ..
    " arguments are not whole publications")
end

local results = {}
for i = 0, count - 1 do
  -- A failing command raises; caught here, it fails this publication only. Like a script of its
  -- own, what it wrote before the failure stays (Redis scripts are atomic, not transactional).
  local ok, result = pcall(publish, i * KEYS_PER, i * ARGS_PER)
  if not ok then
    -- Redis 7 raises a table {err = message}; earlier versions a string.
    if type(result) == "table" then
      result = result.err or "error"
    end
    result = {"error", tostring(result), "", "0"}
  end
  results[i + 1] = result
end
return results

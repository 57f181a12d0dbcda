-- Reads a channel's stream position and, optionally, a range of its publications, in one
-- snapshot. Creates the stream's meta (a new epoch, offset 0) when there is none, so that the
-- epoch given out here is the one later publications get. Publications older than the
-- history ttl are trimmed first (they are the oldest: a prefix of the stream).
--
-- KEYS[1] stream, KEYS[2] meta hash
-- ARGV[1] epoch for a new stream   ARGV[2] meta ttl, ms (0: forever)   ARGV[3] history ttl, ms (0: no trim)
-- ARGV[4] since offset ("": none)  ARGV[5] limit (-1: all, 0: none)    ARGV[6] "1": newest first
-- ARGV[7] "0": do not create a missing meta (answer an empty epoch instead)
--
-- Returns {epoch, top offset, entries} (entries as XRANGE returns them).

local meta = redis.call("HMGET", KEYS[2], "e", "s")
local epoch = meta[1]
local top = meta[2] or "0"
if not epoch and ARGV[7] == "0" then
  return {"", "0", {}}
end
if not epoch then
  epoch = ARGV[1]
  top = "0"
  redis.call("DEL", KEYS[1])
  redis.call("HSET", KEYS[2], "e", epoch, "s", "0")
  if ARGV[2] ~= "0" then
    redis.call("PEXPIRE", KEYS[2], ARGV[2])
  end
end

if ARGV[5] == "0" then
  return {epoch, top, {}}
end

if ARGV[3] ~= "0" then
  local now = redis.call("TIME")
  local cutoff = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000) - tonumber(ARGV[3])
  local start = "-"
  local keep = nil
  while not keep do
    local batch = redis.call("XRANGE", KEYS[1], start, "+", "COUNT", 100)
    if #batch == 0 then
      keep = string.format("%d", tonumber(top) + 1) .. "-0"
      break
    end
    for _, entry in ipairs(batch) do
      local fields = entry[2]
      for i = 1, #fields, 2 do
        if fields[i] == "m" and tonumber(fields[i + 1]) >= cutoff then
          keep = entry[1]
        end
      end
      if keep then
        break
      end
    end
    start = "(" .. batch[#batch][1]
  end
  redis.call("XTRIM", KEYS[1], "MINID", keep)
end

local args
if ARGV[6] == "1" then
  local high = "+"
  if ARGV[4] ~= "" then
    high = "(" .. ARGV[4] .. "-0"
  end
  args = {"XREVRANGE", KEYS[1], high, "-"}
else
  local low = "-"
  if ARGV[4] ~= "" then
    low = "(" .. ARGV[4] .. "-0"
  end
  args = {"XRANGE", KEYS[1], low, "+"}
end
if ARGV[5] ~= "-1" then
  table.insert(args, "COUNT")
  table.insert(args, ARGV[5])
end
return {epoch, top, redis.call(unpack(args))}

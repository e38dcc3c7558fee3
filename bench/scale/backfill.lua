-- wrk script for bench_scale.py: POST /v3/devices/{id}/backfill with 100 new points per request.
-- Request k writes device dev-(k mod 100), seconds first + (k div 100) * 100 + 0..99: never a duplicate.
-- Arguments: first (epoch seconds of the run's time range) [w: warm-up, 3 days later].
local devices, points = 100, 100
local k = 0
local first = 0

function init(args)
  first = tonumber(args[1])
  if args[2] == "w" then
    first = first + 3 * 86400
  end
end

function request()
  local dev = k % devices
  local t = first + math.floor(k / devices) * points
  k = k + 1
  local records = {}
  for i = 0, points - 1 do
    records[#records + 1] = string.format(
      '{"timestamp":"%s","data":{"temperature":%d.5}}', os.date("!%Y-%m-%dT%H:%M:%SZ", t + i), (t + i) % 40
    )
  end
  local headers = { ["Content-Type"] = "application/json" }
  for name, value in pairs(wrk.headers) do -- wrk.format takes these headers instead of the -H ones
    headers[name] = value
  end
  return wrk.format(
    "POST",
    "/v3/devices/urn:ngsi-ld:Device:dev-" .. dev .. "/backfill",
    headers,
    "[" .. table.concat(records, ",") .. "]"
  )
end

local told = false

function response(status, headers, body)
  if status >= 300 and not told then
    told = true
    io.stderr:write("backfill answered " .. status .. ": " .. body .. "\n")
  end
end

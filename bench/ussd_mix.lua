-- wrk script: a realistic mix of USSD hops from many phone numbers.
-- Each conversation is a first hop, four menu hops and a final confirm hop with the PIN
-- (send money), under its own sessionId; conversations interleave so a session's next hop
-- is sent long after its previous one was answered.
-- Arguments: <users> <pin> <delay_ms per request per connection (0 = as fast as possible)> <run id>
--            <first payer> <payers> [<hops per conversation>: 6, or 5 to stop at the confirm screen
--            without the PIN hop (menu hops only)]
-- (the run id keeps session ids unique across runs, and each run has payers of its own: Redis
-- still holds the last run's sessions, and a phone with an unfinished one is offered to resume)

local thread_count = 0

function setup(thread)
  thread:set("thread_id", thread_count)
  thread_count = thread_count + 1
end

function init(args)
  users = tonumber(args[1] or "1000")
  pin = args[2] or "1234"
  pause = tonumber(args[3] or "0")
  run_id = args[4] or "0"
  first_payer = tonumber(args[5] or "0")
  payers = tonumber(args[6] or tostring(users))
  hops = tonumber(args[7] or "6")
  interleave = 64
  convs = {}
  for i = 1, interleave do convs[i] = { step = hops } end
  counter = 0
  started = 0
end

function delay()
  return pause
end

local function new_conversation(c)
  started = started + 1
  local n = thread_id * 1000003 + started
  c.session = string.format("bench-%s-%d-%d", run_id, thread_id, started)
  c.payer = first_payer + (n % payers)
  c.payee = (c.payer * 7 + 1) % users
  if c.payee == c.payer then c.payee = (c.payer + 1) % users end
  c.step = 0
end

local function phone(i) return string.format("+254710%06d", i) end
local function local_phone(i) return string.format("0710%06d", i) end

function request()
  counter = counter + 1
  local c = convs[(counter % interleave) + 1]
  if c.step >= hops then new_conversation(c) end
  local r = local_phone(c.payee)
  local texts = { "", "1", "1*" .. r, "1*" .. r .. "*50", "1*" .. r .. "*50*1", "1*" .. r .. "*50*1*" .. pin }
  local text = texts[c.step + 1]
  c.step = c.step + 1
  local body = "sessionId=" .. c.session .. "&serviceCode=%2A384%2A7%23&phoneNumber=%2B" .. string.sub(phone(c.payer), 2)
    .. "&networkCode=63902&text=" .. string.gsub(text, "%*", "%%2A")
  return wrk.format("POST", "/ussd", { ["Content-Type"] = "application/x-www-form-urlencoded" }, body)
end

function done(summary, latency, requests)
  io.write(string.format("JSON {\"requests\": %d, \"duration_us\": %d, \"p50_us\": %d, \"p99_us\": %d, \"errors\": %d, \"non2xx\": %d}\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout, summary.errors.status))
end

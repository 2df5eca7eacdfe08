-- events_send.lua - wrk sends each prepared batch once:
--   wrk -tN -s events_send.lua URL -- BODIES KEY N RESULTS
-- BODIES holds one JSON body a line; thread t of N takes the lines i with
-- i % N == t. A connection whose thread has no batch left asks for the
-- pool's health page until the thread's last answer is in. Then the thread
-- appends "tid first_post_s last_answer_s sent accepted failed" (monotonic
-- clock) to RESULTS and stops. wrk itself runs for its whole -d unless
-- interrupted: the caller sends SIGINT once every thread has written.

local ffi = require("ffi")
ffi.cdef [[
typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
int clock_gettime(int clk, bench_timespec *ts);
]]
local ts = ffi.new("bench_timespec")

local function now()
   ffi.C.clock_gettime(1, ts) -- CLOCK_MONOTONIC
   return tonumber(ts.tv_sec) + tonumber(ts.tv_nsec) / 1e9
end

local count = 0

function setup(thread)
   thread:set("tid", count)
   count = count + 1
end

local function finish()
   local f = io.open(results, "a")
   f:write(string.format("%d %.6f %.6f %d %d %d\n", tid, first or now(), now(),
                         sent, accepted, failed))
   f:close()
   finished = true
   wrk.thread:stop()
end

function init(args)
   local file, key, nthreads = args[1], args[2], tonumber(args[3])
   results = args[4]
   bodies, next_body = {}, 1
   sent, answered, accepted, failed = 0, 0, 0, 0
   local i = 0
   for line in io.lines(file) do
      if i % nthreads == tid then
         table.insert(bodies, line)
      end
      i = i + 1
   end
   post_headers = {["Content-Type"] = "application/json", ["X-Ingest-Key"] = key}
   idle = wrk.format("GET", "/v1/analytics/healthz")
   -- wrk calls thread 0's request() once before it starts, to see how
   -- many requests one call makes: that call must not use up a batch.
   probed = tid ~= 0
end

function request()
   if not probed then
      probed = true
      return idle
   end
   if next_body <= #bodies then
      local body = bodies[next_body]
      next_body = next_body + 1
      sent = sent + 1
      first = first or now()
      return wrk.format("POST", "/v1/analytics/events", post_headers, body)
   end
   if #bodies == 0 and not finished then
      finish()
   end
   return idle
end

function response(status, headers, body)
   if status == 202 then
      local n = string.match(body, '"accepted":(%d+)')
      accepted = accepted + (tonumber(n) or 0)
      answered = answered + 1
   elseif status ~= 200 then
      failed = failed + 1
      answered = answered + 1
   end
   if answered >= #bodies and not finished then
      finish()
   end
end

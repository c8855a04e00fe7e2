-- POST the JSON document in file BENCH_BODY_FILE to <url>.
local path = os.getenv("BENCH_BODY_FILE")
assert(path and path ~= "", "BENCH_BODY_FILE is not set")
local f = assert(io.open(path, "rb"))
local body = f:read("*a")
f:close()
wrk.method = "POST"
wrk.body = body
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Accept"] = "application/json"

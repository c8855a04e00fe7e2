-- GET <url> with X-Auth-Token (and X-Subject-Token when set).
-- Environment: BENCH_AUTH_TOKEN (required), BENCH_SUBJECT_TOKEN (optional).
local auth = os.getenv("BENCH_AUTH_TOKEN")
assert(auth and auth ~= "", "BENCH_AUTH_TOKEN is not set")
wrk.method = "GET"
wrk.headers["Accept"] = "application/json"
wrk.headers["X-Auth-Token"] = auth
local subject = os.getenv("BENCH_SUBJECT_TOKEN")
if subject and subject ~= "" then
  wrk.headers["X-Subject-Token"] = subject
end

-- S3: ask for a new connection per request. nginx answers with `Connection: close` and closes;
-- wrk then reconnects, so every request pays accept + backend connect through the proxy.
wrk.headers["Connection"] = "close"
-- The JSON summary line comes from stats.lua, next to this file.
dofile(debug.getinfo(1, "S").source:match("^@(.*/)") .. "stats.lua")

-- B1: every request carries a random X-User header (the Maglev key); stats as in stats.lua.
math.randomseed(42)
request = function()
  return wrk.format(nil, nil, { ["X-User"] = tostring(math.random(1, 1000000)) })
end
-- The JSON summary line comes from stats.lua, next to this file.
dofile(debug.getinfo(1, "S").source:match("^@(.*/)") .. "stats.lua")

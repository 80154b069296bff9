-- wrk: POST /oauth/token, grant_type=refresh_token. Refresh tokens are single use, so the
-- script keeps a pool (first filled from REFRESH_TOKENS_FILE, one token a line) and puts each
-- response's successor back into it: every connection always presents a live token. wrk builds
-- two requests per connection at start and sends one, so the file needs ≥ 2 tokens a connection.
dofile("bench/lib.lua")
local pool = {}
for line in io.lines(os.getenv("REFRESH_TOKENS_FILE")) do table.insert(pool, line) end

function request()
  local token = table.remove(pool)
  if token == nil then token = "pool-empty" end
  return wrk.format(nil, nil, nil, "grant_type=refresh_token&refresh_token=" .. token)
end

function response(status, headers, body)
  local token = body:match('"refresh_token":"([^"]+)"')
  if token then table.insert(pool, token) end
end

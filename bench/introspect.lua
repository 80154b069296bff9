-- wrk: POST /oauth/introspect of ACCESS_TOKEN.
dofile("bench/lib.lua")
wrk.body = "token=" .. os.getenv("ACCESS_TOKEN")

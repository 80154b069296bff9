-- wrk: POST /oauth/token, grant_type=client_credentials, HTTP Basic (CLIENT_ID/CLIENT_SECRET).
dofile("bench/lib.lua")
wrk.body = "grant_type=client_credentials"

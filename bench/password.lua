-- wrk: POST /oauth/token, grant_type=password for USERNAME/PASSWORD.
dofile("bench/lib.lua")
wrk.body = "grant_type=password&username=" .. urlencode(os.getenv("USERNAME"))
  .. "&password=" .. urlencode(os.getenv("PASSWORD"))

-- wrk: POST /transcriptions with a JSON body and the Bearer token in TOKEN.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("TOKEN")
wrk.body = '{"email":"bench@example.com","audio_url":"https://cdn.example.com/a.wav"}'

function done(summary, latency, requests)
  local bad = summary.errors.status
  if bad > 0 then io.write(string.format("non-2xx answers: %d\n", bad)) end
end

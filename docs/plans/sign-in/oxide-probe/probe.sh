#!/bin/bash
# Drives the oxide-auth probe server (oxide/src/main.rs) over real HTTP with curl.
# usage: probe.sh [CODE_TTL_SECS]   (an override makes the authorizer shorten grant.until)
set -u
BIN=${BIN:-target/release/oxide}
LOG=$(mktemp)
CODE_TTL_SECS=${1:-} "$BIN" > "$LOG" 2>&1 &
PID=$!
trap 'kill $PID' EXIT
for _ in $(seq 50); do grep -q listening "$LOG" && break; sleep 0.1; done
BASE="http://$(awk '/listening/{print $2}' "$LOG")"
V=dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk    # RFC 7636 appendix B
CH=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM
CONF_BASIC=$(printf 'conf:s3cret' | base64)
enc() { python3 -c 'import sys,urllib.parse;print(urllib.parse.quote(sys.argv[1],safe=""))' "$1"; }

# GET $1 (path?query); print status, Location and body
get() {
  local out; out=$(curl -s -D - -o /tmp/probe-body "$BASE$1")
  printf '  -> %s' "$(echo "$out" | head -1 | tr -d '\r')"
  local loc; loc=$(echo "$out" | grep -i '^location:' | tr -d '\r' | cut -d' ' -f2-)
  [ -n "$loc" ] && printf '  Location: %s' "$loc"
  [ -s /tmp/probe-body ] && printf '  body: %s' "$(head -c 200 /tmp/probe-body)"
  echo
}
# a code for client $1, redirect $2
code_for() {
  curl -s -D - -o /dev/null "$BASE/authorize?response_type=code&client_id=$1&redirect_uri=$(enc "$2")&state=s1&code_challenge=$CH&code_challenge_method=S256" \
    | grep -i '^location:' | sed 's/.*[?&]code=\([^&]*\).*/\1/' | tr -d '\r'
}
# POST /token with form $1 and optional extra curl args
post() {
  local form=$1; shift
  local out; out=$(curl -s -D - -o /tmp/probe-body "$@" --data "$form" "$BASE/token")
  printf '  -> %s' "$(echo "$out" | head -1 | tr -d '\r')"
  local www; www=$(echo "$out" | grep -i '^www-authenticate:' | tr -d '\r')
  [ -n "$www" ] && printf '  %s' "$www"
  printf '  body: %s\n' "$(head -c 300 /tmp/probe-body)"
}
R=$(enc https://client.example/cb)
Q="response_type=code&client_id=conf&redirect_uri=$R&scope=openid&state=xyz"
if [ -n "${1:-}" ]; then
  echo "== (c) code lifetime with the authorizer overriding grant.until to now + ${1} s"
  C=$(code_for conf https://client.example/cb); sleep $(( $1 + 1 ))
  echo "token request $(( $1 + 1 )) s later:"
  post "grant_type=authorization_code&code=$C&redirect_uri=$R&code_verifier=$V" -H "Authorization: Basic $CONF_BASIC"
  echo "server log:"; sed 's/^/  /' "$LOG"
  exit 0
fi

echo "== authorization endpoint (GET $BASE/authorize)"
echo "A1 valid S256 request";                     get "/authorize?$Q&code_challenge=$CH&code_challenge_method=S256"
echo "A2 same through our Location rewrite (/authorize-iss)"; get "/authorize-iss?$Q&code_challenge=$CH&code_challenge_method=S256"
echo "A3 code_challenge_method=plain";            get "/authorize?$Q&code_challenge=$V&code_challenge_method=plain"
echo "A4 no code_challenge";                      get "/authorize?$Q"
echo "A5 challenge but no method (RFC 7636 default plain)"; get "/authorize?$Q&code_challenge=$CH"
echo "A6 S256 challenge 'abc' (RFC 7636 4.2: 43 chars)"; get "/authorize?$Q&code_challenge=abc&code_challenge_method=S256"
echo "A7 unknown client_id";                      get "/authorize?response_type=code&client_id=nobody&redirect_uri=$R&state=xyz&code_challenge=$CH&code_challenge_method=S256"
echo "A8 no client_id";                           get "/authorize?response_type=code&redirect_uri=$R&state=xyz&code_challenge=$CH&code_challenge_method=S256"
echo "A9 redirect_uri with trailing slash";       get "/authorize?response_type=code&client_id=conf&redirect_uri=$(enc https://client.example/cb/)&state=xyz&code_challenge=$CH&code_challenge_method=S256"
echo "A10 redirect_uri https://client.example:443/cb"; get "/authorize?response_type=code&client_id=conf&redirect_uri=$(enc https://client.example:443/cb)&state=xyz&code_challenge=$CH&code_challenge_method=S256"
echo "A11 no redirect_uri";                       get "/authorize?response_type=code&client_id=conf&state=xyz&code_challenge=$CH&code_challenge_method=S256"
echo "A12 response_type=token";                   get "/authorize?response_type=token&client_id=conf&redirect_uri=$R&state=xyz&code_challenge=$CH&code_challenge_method=S256"
echo "A13 no response_type";                      get "/authorize?client_id=conf&redirect_uri=$R&state=xyz&code_challenge=$CH&code_challenge_method=S256"
echo "A14 state repeated";                        get "/authorize?$Q&state=abc&code_challenge=$CH&code_challenge_method=S256"
echo "A15 scope with a double quote (not a scope-token char)"; get "/authorize?response_type=code&client_id=conf&redirect_uri=$R&state=xyz&scope=%22&code_challenge=$CH&code_challenge_method=S256"
echo "A16 owner denies";                          get "/authorize?$Q&code_challenge=$CH&code_challenge_method=S256&decision=deny"
echo "A17 owner denies, through /authorize-iss";  get "/authorize-iss?$Q&code_challenge=$CH&code_challenge_method=S256&decision=deny"
echo "A18 plain refused, through /authorize-iss"; get "/authorize-iss?$Q&code_challenge=$V&code_challenge_method=plain"
echo "A19 native, registered http://localhost/cb, asked http://localhost:51234/cb"; get "/authorize?response_type=code&client_id=native&redirect_uri=$(enc http://localhost:51234/cb)&state=xyz&code_challenge=$CH&code_challenge_method=S256"
echo "A20 native, registered http://127.0.0.1/cb, asked http://127.0.0.1:51234/cb"; get "/authorize?response_type=code&client_id=native&redirect_uri=$(enc http://127.0.0.1:51234/cb)&state=xyz&code_challenge=$CH&code_challenge_method=S256"
echo "A21 native, registered http://[::1]/cb, asked http://[::1]:51234/cb"; get "/authorize?response_type=code&client_id=native&redirect_uri=$(enc 'http://[::1]:51234/cb')&state=xyz&code_challenge=$CH&code_challenge_method=S256"
echo "A22 native, asked http://127.0.0.1/cb (exactly as registered)"; get "/authorize?response_type=code&client_id=native&redirect_uri=$(enc http://127.0.0.1/cb)&state=xyz&code_challenge=$CH&code_challenge_method=S256"

echo "A23 POST /authorize with the same parameters as a form body (OIDC Core 3.1.2.1)"
printf '  -> %s\n' "$(curl -s -D - -o /tmp/probe-body --data "$Q&code_challenge=$CH&code_challenge_method=S256" "$BASE/authorize" | head -1 | tr -d '\r')  body: $(head -c 200 /tmp/probe-body)"

echo
echo "== token endpoint (POST $BASE/token), confidential client 'conf' with HTTP Basic unless said"
C=$(code_for conf https://client.example/cb)
echo "T1 right code, redirect_uri and verifier"
post "grant_type=authorization_code&code=$C&redirect_uri=$R&code_verifier=$V" -H "Authorization: Basic $CONF_BASIC"
echo "T2 the same code again (replay)"
post "grant_type=authorization_code&code=$C&redirect_uri=$R&code_verifier=$V" -H "Authorization: Basic $CONF_BASIC"
C=$(code_for conf https://client.example/cb)
echo "T3 wrong code_verifier"
post "grant_type=authorization_code&code=$C&redirect_uri=$R&code_verifier=${V}x" -H "Authorization: Basic $CONF_BASIC"
echo "T3b the same code afterwards with the right verifier"
post "grant_type=authorization_code&code=$C&redirect_uri=$R&code_verifier=$V" -H "Authorization: Basic $CONF_BASIC"
C=$(code_for conf https://client.example/cb)
echo "T4 no code_verifier"
post "grant_type=authorization_code&code=$C&redirect_uri=$R" -H "Authorization: Basic $CONF_BASIC"
C=$(code_for conf https://client.example/cb)
echo "T5 wrong redirect_uri (https://client.example/other)"
post "grant_type=authorization_code&code=$C&redirect_uri=$(enc https://client.example/other)&code_verifier=$V" -H "Authorization: Basic $CONF_BASIC"
C=$(code_for conf https://client.example/cb)
echo "T6 redirect_uri https://CLIENT.example:443/cb (not the string used at /authorize)"
post "grant_type=authorization_code&code=$C&redirect_uri=$(enc https://CLIENT.example:443/cb)&code_verifier=$V" -H "Authorization: Basic $CONF_BASIC"
C=$(code_for native https://app.example/cb)
echo "T7 code issued to 'native', redeemed by 'conf'"
post "grant_type=authorization_code&code=$C&redirect_uri=$(enc https://app.example/cb)&code_verifier=$V" -H "Authorization: Basic $CONF_BASIC"
C=$(code_for native https://app.example/cb)
echo "T8 public client 'native', client_id in the body"
post "grant_type=authorization_code&code=$C&client_id=native&redirect_uri=$(enc https://app.example/cb)&code_verifier=$V"
echo "T9 unknown code"
post "grant_type=authorization_code&code=nope&redirect_uri=$R&code_verifier=$V" -H "Authorization: Basic $CONF_BASIC"
C=$(code_for conf https://client.example/cb)
echo "T10 client_secret_post (client_id + client_secret in the body)"
post "grant_type=authorization_code&code=$C&client_id=conf&client_secret=s3cret&redirect_uri=$R&code_verifier=$V"
C=$(code_for conf https://client.example/cb)
echo "T11 Basic and client_id=conf in the body (RFC 6749 3.2.1 allows client_id)"
post "grant_type=authorization_code&code=$C&client_id=conf&redirect_uri=$R&code_verifier=$V" -H "Authorization: Basic $CONF_BASIC"
C=$(code_for conf https://client.example/cb)
echo "T12 wrong client secret"
post "grant_type=authorization_code&code=$C&redirect_uri=$R&code_verifier=$V" -H "Authorization: Basic $(printf 'conf:wrong' | base64)"
echo
echo "server log:"; sed 's/^/  /' "$LOG"

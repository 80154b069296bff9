#!/usr/bin/python3
"""A stock relying party (authlib 1.2.0 + requests, Debian bookworm packages) against the auth server.

discovery -> PKCE authorization (a requests session as the browser: follows redirects, posts the login
form with its CSRF token, allows on the consent page) -> code exchange -> id_token validation via JWKS
-> userinfo -> refresh -> RP-initiated logout -> prompt=none now answers login_required.

usage:
  rp_flow.py ISSUER CLIENT_ID CLIENT_SECRET|- REDIRECT_URI POST_LOGOUT_URI EMAIL   (password on stdin)
  rp_flow.py --self-test      (no server: imports, PKCE, form parsing, id_token checks on a local key)

Prints one JSON line per step; exits non-zero on the first failure.
Interpreter: /usr/bin/python3 (python3-authlib and python3-requests are Debian packages; a pyenv
python3 earlier on PATH does not see them). Run by test_support::rp (test-support/src/rp.rs).

What it expects of the server (docs/plans/sign-in.md section 5): the login page is a <form> with
hidden inputs (csrf_token, the request) and `email`/`password` inputs; the consent page is a <form>
with hidden inputs and a button name="decision" value="allow"; every authorization response, the
errors included, carries RFC 9207 `iss`; discovery names {issuer}/oauth/authorize,
{issuer}/oauth/userinfo and {issuer}/oauth/logout (the end_session_endpoint).
"""
import base64
import hashlib
import html.parser
import json
import os
import secrets
import sys
import time
import urllib.parse

import requests
from authlib.common.security import generate_token
from authlib.integrations.requests_client import OAuth2Session
from authlib.jose import JsonWebKey, jwt
from authlib.oidc.core import CodeIDToken
from authlib.oidc.discovery import OpenIDProviderMetadata


# Seconds for any one HTTP request (a login runs argon2 on a loaded CI machine).
TIMEOUT = 30


def step(name, **kw):
    print(json.dumps({"step": name, **kw}), flush=True)


class FormParser(html.parser.HTMLParser):
    """The first <form>: its method, action and inputs (hidden ones included)."""

    def __init__(self):
        super().__init__()
        self.form = None
        self.done = False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "form" and self.form is None:
            self.form = {"method": (a.get("method") or "get").lower(), "action": a.get("action") or "", "fields": {}, "buttons": []}
        elif self.form is not None and not self.done:
            submit = tag == "button" and (a.get("type") or "submit").lower() == "submit"
            submit = submit or (tag == "input" and (a.get("type") or "").lower() == "submit")
            if submit:
                if a.get("name"):
                    self.form["buttons"].append((a["name"], a.get("value") or ""))
            elif tag == "input" and a.get("name"):
                self.form["fields"][a["name"]] = a.get("value") or ""

    def handle_endtag(self, tag):
        if tag == "form" and self.form is not None:
            self.done = True


def parse_form(page):
    p = FormParser()
    p.feed(page)
    if p.form is None:
        raise AssertionError("no <form> in the page")
    return p.form


def follow(browser, r, stop_at):
    """Follows redirects by hand from the response r; returns (Location, None) at the first one
    that starts with stop_at, else (None, the first response that is not a redirect)."""
    for _ in range(10):
        if r.status_code not in (301, 302, 303, 307):
            return None, r
        loc = urllib.parse.urljoin(r.url, r.headers["Location"])
        if loc.startswith(stop_at):
            return loc, None
        r = browser.get(loc, allow_redirects=False, timeout=TIMEOUT)
    raise AssertionError(f"too many redirects, the last to {r.url}")


def browse(browser, url, redirect_uri, email, password):
    """Act as the user agent from the authorization URL until the server redirects to redirect_uri.
    Returns that final Location. Fills the login form (once) and presses 'allow' on the consent
    form; a page that is neither, or the login form again after a login, is a failure."""
    if url.startswith(redirect_uri):
        return url
    r = browser.get(url, allow_redirects=False, timeout=TIMEOUT)
    logged_in = False
    for _ in range(5):
        loc, r = follow(browser, r, redirect_uri)
        if loc is not None:
            return loc
        if r.status_code != 200 or "text/html" not in r.headers.get("Content-Type", ""):
            raise AssertionError(f"unexpected {r.status_code} at {r.url}: {r.text[:200]}")
        form = parse_form(r.text)
        fields = dict(form["fields"])
        if "password" in fields:  # the login page
            assert not logged_in, "the login form again after a login: wrong e-mail or password?"
            assert "csrf_token" in fields, "login form without csrf_token"
            assert "email" in fields, f"login form without an email input: {sorted(fields)}"
            fields.update(email=email, password=password)
            logged_in = True
            step("login_form", action=form["action"])
        else:  # the consent page: press the button that allows
            allow = [b for b in form["buttons"] if b == ("decision", "allow")]
            assert allow, f"neither login nor consent form: {form}"
            assert "csrf_token" in fields, "consent form without csrf_token"
            fields["decision"] = "allow"
            step("consent_form", action=form["action"])
        assert form["method"] == "post", f"the form is not POSTed: {form}"
        action = urllib.parse.urljoin(r.url, form["action"])
        r = browser.post(action, data=fields, allow_redirects=False, timeout=TIMEOUT)
    raise AssertionError("too many pages before the redirect")


def validate_id_token(id_token, jwks, issuer, client_id, nonce, access_token):
    keys = JsonWebKey.import_key_set(jwks)
    claims = jwt.decode(
        id_token,
        keys,
        claims_cls=CodeIDToken,
        # authlib 1.2.0 checks `aud` only against claims_options (claims_params' client_id is
        # used for azp alone): without the "aud" option an id_token for another client passes.
        claims_options={"iss": {"essential": True, "value": issuer}, "aud": {"essential": True, "value": client_id},
                        "auth_time": {"essential": True}},
        claims_params={"nonce": nonce, "client_id": client_id, "access_token": access_token},
    )
    claims.validate(leeway=60)
    assert claims.header["alg"] in ("RS256", "ES256"), claims.header
    return claims


def run(issuer, client_id, client_secret, redirect_uri, post_logout_uri, email, password):
    # 1. discovery (OIDC Discovery 1.0 §4: path appended to the issuer)
    r = requests.get(issuer.rstrip("/") + "/.well-known/openid-configuration", timeout=TIMEOUT)
    r.raise_for_status()
    meta = r.json()
    OpenIDProviderMetadata(meta).validate()
    assert meta["issuer"] == issuer
    assert meta["code_challenge_methods_supported"] == ["S256"]
    assert meta.get("authorization_response_iss_parameter_supported") is True
    # The endpoints of docs/plans/sign-in.md 5.9 (the end-session endpoint of RP-Initiated
    # Logout 1.0 section 2.1 is /oauth/logout).
    base = issuer.rstrip("/")
    for name, path in (("authorization_endpoint", "/oauth/authorize"), ("userinfo_endpoint", "/oauth/userinfo"),
                       ("end_session_endpoint", "/oauth/logout")):
        assert meta.get(name) == base + path, f"{name} is {meta.get(name)!r}, not {base + path!r}"
    step("discovery", issuer=meta["issuer"])

    public = client_secret == "-"
    def session():
        return OAuth2Session(
            client_id,
            None if public else client_secret,
            scope="openid profile email",
            redirect_uri=redirect_uri,
            code_challenge_method="S256",
            token_endpoint_auth_method="none" if public else "client_secret_basic",
        )
    client = session()

    # 2. PKCE authorization through the login (and consent) pages
    verifier = generate_token(48)
    nonce = generate_token(20)
    url, state = client.create_authorization_url(meta["authorization_endpoint"], code_verifier=verifier, nonce=nonce)
    browser = requests.Session()  # the user agent: keeps the session cookie
    callback = browse(browser, url, redirect_uri, email, password)
    q = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(callback).query))
    # RFC 9207: authlib 1.2.0 does not check `iss` in the authorization response; do it here.
    assert q.get("iss") == issuer, f"authorization response iss {q.get('iss')!r}"
    assert q.get("state") == state and "code" in q, q
    step("authorized", cookies=sorted(browser.cookies.keys()))

    # 3. code exchange (authlib checks state against the callback URL)
    token = client.fetch_token(meta["token_endpoint"], authorization_response=callback, code_verifier=verifier)
    assert token["token_type"].lower() == "bearer" and "id_token" in token and "refresh_token" in token, token.keys()
    step("token", scope=token.get("scope"), expires_in=token.get("expires_in"))

    # 4. id_token via the JWKS
    jwks = requests.get(meta["jwks_uri"], timeout=TIMEOUT).json()
    claims = validate_id_token(token["id_token"], jwks, issuer, client_id, nonce, token["access_token"])
    step("id_token", alg=claims.header["alg"], sub=claims["sub"], amr=claims.get("amr"))

    # 5. userinfo (Bearer header by the session)
    info = client.get(meta["userinfo_endpoint"], timeout=TIMEOUT)
    info.raise_for_status()
    info = info.json()
    assert info["sub"] == claims["sub"] and info.get("email") == email, info
    step("userinfo", claims=sorted(info))

    # 6. refresh: rotation, and the new id_token (if any) names the same user
    old_refresh = token["refresh_token"]
    new = client.refresh_token(meta["token_endpoint"])
    assert new["refresh_token"] != old_refresh
    if "id_token" in new:
        c2 = validate_id_token(new["id_token"], jwks, issuer, client_id, None, new["access_token"])
        assert c2["sub"] == claims["sub"]
    step("refresh", rotated=True)

    # 7. SSO: a second authorization in the same browser needs no form
    c2 = session()
    v2 = generate_token(48)
    url2, state2 = c2.create_authorization_url(meta["authorization_endpoint"], code_verifier=v2, nonce=generate_token(20))
    r = browser.get(url2, allow_redirects=False, timeout=TIMEOUT)
    assert r.status_code in (302, 303) and r.headers["Location"].startswith(redirect_uri), (r.status_code, r.text[:200])
    q = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(r.headers["Location"]).query))
    assert q.get("iss") == issuer and q.get("state") == state2 and "code" in q, q
    step("sso", status=r.status_code)

    # 8. RP-initiated logout 1.0
    logout_state = secrets.token_urlsafe(8)
    r = browser.get(meta["end_session_endpoint"], params={
        "id_token_hint": token["id_token"], "post_logout_redirect_uri": post_logout_uri,
        "state": logout_state, "client_id": client_id}, allow_redirects=False, timeout=TIMEOUT)
    if r.status_code == 200:  # a confirmation page: submit its form with its first button, as Enter does
        form = parse_form(r.text)
        fields = dict(form["fields"])
        if form["buttons"]:
            fields[form["buttons"][0][0]] = form["buttons"][0][1]
        r = browser.post(urllib.parse.urljoin(r.url, form["action"]), data=fields, allow_redirects=False,
                         timeout=TIMEOUT)
    loc = r.headers.get("Location", "")
    assert loc.startswith(post_logout_uri) and f"state={logout_state}" in loc, (r.status_code, loc)
    step("logout", location=loc)

    # 9. the browser session is gone: prompt=none answers login_required at the redirect URI
    c3 = session()
    url3, state3 = c3.create_authorization_url(meta["authorization_endpoint"], code_verifier=generate_token(48), prompt="none")
    r = browser.get(url3, allow_redirects=False, timeout=TIMEOUT)
    loc = r.headers.get("Location", "")
    assert r.status_code in (302, 303) and loc.startswith(redirect_uri), (r.status_code, loc, r.text[:200])
    q = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(loc).query))
    assert q.get("error") == "login_required" and q.get("state") == state3 and q.get("iss") == issuer, q
    step("prompt_none_after_logout", error=q["error"])


def browse_pages_of_a_local_server():
    """browse() through a login page, a consent page and a 303 to the redirect URI served by a
    local http.server shaped like docs/plans/sign-in.md 5.3; returns the paths it POSTed to."""
    import http.server
    import threading

    posts = []

    class Pages(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def page(self, body):
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.end_headers()
            self.wfile.write(body.encode())

        def do_GET(self):
            assert self.path.startswith("/oauth/authorize?"), self.path
            self.page('<form method="post" action="/oauth/login"><input type="hidden" name="request" value="r">'
                      '<input type="hidden" name="csrf_token" value="c1"><input name="email" value="hint@example.com">'
                      '<input name="password" type="password"><button type="submit">Sign in</button></form>')

        def do_POST(self):
            form = dict(urllib.parse.parse_qsl(self.rfile.read(int(self.headers["Content-Length"])).decode()))
            posts.append(self.path)
            if self.path == "/oauth/login":
                assert form == {"request": "r", "csrf_token": "c1", "email": "a@example.com", "password": "pw"}, form
                self.page('<form method="post" action="/oauth/consent"><input type="hidden" name="request" value="r">'
                          '<input type="hidden" name="csrf_token" value="c2">'
                          '<button name="decision" value="deny">Deny</button><button name="decision" value="allow">Allow</button></form>')
            else:
                assert self.path == "/oauth/consent" and form == {"request": "r", "csrf_token": "c2", "decision": "allow"}, form
                self.send_response(303)
                self.send_header("Location", "http://127.0.0.1:9/cb?code=x&state=s&iss=http%3A%2F%2Flocalhost")
                self.end_headers()

    server = http.server.HTTPServer(("127.0.0.1", 0), Pages)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/oauth/authorize?client_id=web"
        callback = browse(requests.Session(), url, "http://127.0.0.1:9/cb", "a@example.com", "pw")
    finally:
        server.shutdown()
    assert callback == "http://127.0.0.1:9/cb?code=x&state=s&iss=http%3A%2F%2Flocalhost", callback
    return posts


def self_test():
    """No server: the pieces above on local data."""
    # PKCE as authlib computes it equals RFC 7636 appendix B
    from authlib.oauth2.rfc7636 import create_s256_code_challenge
    assert create_s256_code_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk") == "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
    s = OAuth2Session("web", None, scope="openid", redirect_uri="http://127.0.0.1:9/cb", code_challenge_method="S256", token_endpoint_auth_method="none")
    url, state = s.create_authorization_url("http://localhost:8080/oauth/authorize", code_verifier="v" * 43, nonce="n1")
    q = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query))
    assert q["code_challenge_method"] == "S256" and q["nonce"] == "n1" and q["state"] == state, q
    step("pkce_url", params=sorted(q))
    # form parsing
    f = parse_form('<form method="post" action="/oauth/login"><input type="hidden" name="csrf_token" value="t1">'
                   '<input name="email"><input name="password" type="password"><button type="submit">Sign in</button></form>')
    assert f["fields"] == {"csrf_token": "t1", "email": "", "password": ""}, f
    f = parse_form('<form method="post" action="/oauth/consent"><input type="hidden" name="csrf_token" value="t2">'
                   '<button name="decision" value="allow">Allow</button><button name="decision" value="deny">Deny</button></form>')
    assert f["buttons"] == [("decision", "allow"), ("decision", "deny")], f
    assert f["fields"] == {"csrf_token": "t2"}, f
    f = parse_form('<form method="post" action="/oauth/logout"><input type="hidden" name="csrf_token" value="t3">'
                   '<input type="submit" name="confirm" value="yes"><button type="button" name="x">x</button></form>'
                   '<form action="/other"><input name="second"></form>')
    assert f["fields"] == {"csrf_token": "t3"} and f["buttons"] == [("confirm", "yes")], f
    step("forms")
    # the user agent: login page -> consent page -> 303 to the redirect URI, on a local server
    posts = browse_pages_of_a_local_server()
    step("browse", posts=posts)
    # id_token: RS256 and ES256 keys in one JWKS, at_hash and nonce checked
    rsa = JsonWebKey.generate_key("RSA", 2048, is_private=True, options={"kid": "r1"})
    ec = JsonWebKey.generate_key("EC", "P-256", is_private=True, options={"kid": "e1"})
    jwks = {"keys": [rsa.as_dict(is_private=False, use="sig", alg="RS256"), ec.as_dict(is_private=False, use="sig", alg="ES256")]}
    at = "access-token-value"
    at_hash = base64.urlsafe_b64encode(hashlib.sha256(at.encode()).digest()[:16]).rstrip(b"=").decode()
    now = int(time.time())
    payload = {"iss": "http://localhost:8080", "sub": "u1", "aud": "web", "exp": now + 300, "iat": now,
               "auth_time": now, "nonce": "n1", "at_hash": at_hash, "amr": ["pwd"], "azp": "web"}
    for alg, key in (("RS256", rsa), ("ES256", ec)):
        tok = jwt.encode({"alg": alg, "kid": key.as_dict()["kid"], "typ": "JWT"}, payload, key).decode()
        validate_id_token(tok, jwks, "http://localhost:8080", "web", "n1", at)
        for bad in ({"nonce": "other"}, {"aud": "other"}, {"iss": "http://evil"}, {"at_hash": "AAAA"}):
            tok = jwt.encode({"alg": alg, "kid": key.as_dict()["kid"]}, {**payload, **bad}, key).decode()
            try:
                validate_id_token(tok, jwks, "http://localhost:8080", "web", "n1", at)
            except Exception:
                continue
            raise AssertionError(f"{alg} accepted {bad}")
    step("id_token_checks", algs=["RS256", "ES256"])
    # discovery validation and http issuers
    doc = {"issuer": "http://127.0.0.1:8080", "authorization_endpoint": "http://127.0.0.1:8080/oauth/authorize",
           "token_endpoint": "http://127.0.0.1:8080/oauth/token", "jwks_uri": "http://127.0.0.1:8080/.well-known/jwks.json",
           "response_types_supported": ["code"], "subject_types_supported": ["public"],
           "id_token_signing_alg_values_supported": ["RS256", "ES256"]}
    try:
        OpenIDProviderMetadata(doc).validate()
        http_ip = "accepted"
    except ValueError as e:
        http_ip = f"refused: {e}"
    loc = json.loads(json.dumps(doc).replace("127.0.0.1", "localhost"))
    OpenIDProviderMetadata(loc).validate()
    os.environ["AUTHLIB_INSECURE_TRANSPORT"] = "1"
    OpenIDProviderMetadata(doc).validate()
    step("discovery_validation", http_127_0_0_1=http_ip, http_localhost_port="accepted",
         http_127_0_0_1_with_AUTHLIB_INSECURE_TRANSPORT="accepted")


if __name__ == "__main__":
    if sys.argv[1:] == ["--self-test"]:
        self_test()
    elif len(sys.argv) == 7:
        run(*sys.argv[1:7], sys.stdin.readline().rstrip("\n"))
    else:
        sys.exit(__doc__)

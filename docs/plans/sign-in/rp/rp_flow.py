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
python3 earlier on PATH does not see them).
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
            if tag == "input" and a.get("name"):
                self.form["fields"][a["name"]] = a.get("value") or ""
            elif tag == "button" and a.get("name"):
                self.form["buttons"].append((a["name"], a.get("value") or ""))

    def handle_endtag(self, tag):
        if tag == "form" and self.form is not None:
            self.done = True


def parse_form(page):
    p = FormParser()
    p.feed(page)
    if p.form is None:
        raise AssertionError("no <form> in the page")
    return p.form


def browse(browser, url, redirect_uri, email, password):
    """Act as the user agent from the authorization URL until the server redirects to redirect_uri.
    Returns that final Location. Fills the login form and presses 'allow' on the consent form."""
    for _ in range(10):
        if url.startswith(redirect_uri):
            return url
        r = browser.get(url, allow_redirects=False) if isinstance(url, str) else url
        while r.status_code in (301, 302, 303, 307):
            loc = urllib.parse.urljoin(r.url, r.headers["Location"])
            if loc.startswith(redirect_uri):
                return loc
            r = browser.get(loc, allow_redirects=False)
        if r.status_code != 200 or "text/html" not in r.headers.get("Content-Type", ""):
            raise AssertionError(f"unexpected {r.status_code} at {r.url}: {r.text[:200]}")
        form = parse_form(r.text)
        fields = dict(form["fields"])
        if "password" in fields:  # the login page
            assert "csrf_token" in fields, "login form without csrf_token"
            fields.update(email=email, password=password)
            step("login_form", action=form["action"])
        else:  # the consent page: press the button that allows
            allow = [b for b in form["buttons"] if b[1] == "allow"]
            assert allow, f"neither login nor consent form: {form}"
            fields[allow[0][0]] = allow[0][1]
            step("consent_form", action=form["action"])
        action = urllib.parse.urljoin(r.url, form["action"])
        url = browser.post(action, data=fields, allow_redirects=False)
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
    meta = requests.get(issuer.rstrip("/") + "/.well-known/openid-configuration", timeout=10).json()
    OpenIDProviderMetadata(meta).validate()
    assert meta["issuer"] == issuer
    assert meta["code_challenge_methods_supported"] == ["S256"]
    assert meta.get("authorization_response_iss_parameter_supported") is True
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
    jwks = requests.get(meta["jwks_uri"], timeout=10).json()
    claims = validate_id_token(token["id_token"], jwks, issuer, client_id, nonce, token["access_token"])
    step("id_token", alg=claims.header["alg"], sub=claims["sub"], amr=claims.get("amr"))

    # 5. userinfo (Bearer header by the session)
    info = client.get(meta["userinfo_endpoint"], timeout=10)
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
    r = browser.get(url2, allow_redirects=False)
    assert r.status_code in (302, 303) and r.headers["Location"].startswith(redirect_uri), (r.status_code, r.text[:200])
    step("sso", status=r.status_code)

    # 8. RP-initiated logout 1.0
    logout_state = secrets.token_urlsafe(8)
    r = browser.get(meta["end_session_endpoint"], params={
        "id_token_hint": token["id_token"], "post_logout_redirect_uri": post_logout_uri,
        "state": logout_state, "client_id": client_id}, allow_redirects=False)
    if r.status_code == 200:  # a confirmation page: submit its form
        form = parse_form(r.text)
        r = browser.post(urllib.parse.urljoin(r.url, form["action"]), data=form["fields"], allow_redirects=False)
    loc = r.headers.get("Location", "")
    assert loc.startswith(post_logout_uri) and f"state={logout_state}" in loc, (r.status_code, loc)
    step("logout", location=loc)

    # 9. the browser session is gone: prompt=none answers login_required at the redirect URI
    c3 = session()
    url3, state3 = c3.create_authorization_url(meta["authorization_endpoint"], code_verifier=generate_token(48), prompt="none")
    r = browser.get(url3, allow_redirects=False)
    q = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(r.headers.get("Location", "")).query))
    assert q.get("error") == "login_required" and q.get("state") == state3 and q.get("iss") == issuer, q
    step("prompt_none_after_logout", error=q["error"])


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
    step("forms")
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

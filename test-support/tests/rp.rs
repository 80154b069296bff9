//! The relying-party script runs its offline self-test green through
//! [`test_support::rp::run_rp_self_test`]: authlib and requests import under `/usr/bin/python3`,
//! and the script's pieces (PKCE, the form parser and the user agent on local pages, id_token
//! checks, discovery validation) work before any server exists. In CI a missing
//! `python3-authlib` or `python3-requests` fails this test.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[tokio::test]
async fn the_relying_party_script_passes_its_self_test() {
    let Some(outcome) = test_support::rp::run_rp_self_test().await else {
        return;
    };
    outcome.assert_success();
    assert_eq!(
        outcome.step_names(),
        [
            "pkce_url",
            "forms",
            "login_form",
            "consent_form",
            "browse",
            "id_token_checks",
            "discovery_validation"
        ],
        "{}",
        outcome.stdout
    );
    assert_eq!(
        outcome.step("browse").unwrap()["posts"],
        serde_json::json!(["/oauth/login", "/oauth/consent"])
    );
    assert_eq!(
        outcome.step("id_token_checks").unwrap()["algs"],
        serde_json::json!(["RS256", "ES256"])
    );
    // The reason the RP tests run the server with an issuer `http://localhost:PORT`.
    let discovery = outcome.step("discovery_validation").unwrap();
    assert_eq!(discovery["http_localhost_port"], "accepted");
    assert!(
        discovery["http_127_0_0_1"]
            .as_str()
            .unwrap()
            .starts_with("refused"),
        "{discovery}"
    );
}

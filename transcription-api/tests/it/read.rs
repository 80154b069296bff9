//! `GET /transcriptions/{id}` and `GET /transcriptions`: owner isolation and pagination.

use reqwest::StatusCode;
use reqwest::header::LINK;
use serde_json::Value;

use crate::helpers::*;

#[tokio::test]
async fn the_owner_reads_the_record() {
    let api = TestApi::spawn().await;
    let token = api.token(&[WRITE, READ]).await;
    let id = api.create(&token).await;
    let response = api.get(&token, &format!("/transcriptions/{id}")).await;
    assert_eq!(response.status(), StatusCode::OK);
    let record: Value = response.json().await.unwrap();
    assert_eq!(record["id"], id.to_string());
    assert_eq!(record["status"], "queued");
    assert_eq!(record["email"], "ada@example.com");
    assert_eq!(record["audio_url"], "https://cdn.example.com/a.wav");
    assert!(record.get("transcript").is_none());
    assert!(record["created_at"].as_str().unwrap().ends_with('Z'));
}

#[tokio::test]
async fn others_get_404_as_for_an_unknown_id() {
    let api = TestApi::spawn().await;
    let owner = api.token(&[WRITE, READ]).await;
    let stranger = api.token(&[WRITE, READ]).await;
    let id = api.create(&owner).await;
    for path in [
        format!("/transcriptions/{id}"),
        format!("/transcriptions/{}", uuid::Uuid::new_v4()),
        "/transcriptions/not-a-uuid".to_owned(),
    ] {
        let response = api.get(&stranger, &path).await;
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "{path}");
        assert_eq!(
            response.json::<Value>().await.unwrap()["error"],
            "not_found"
        );
    }
    let listed: Value = api
        .get(&stranger, "/transcriptions")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(listed["data"], Value::Array(vec![]));
}

#[tokio::test]
async fn the_list_is_the_callers_own_newest_first_in_pages() {
    let api = TestApi::spawn().await;
    let token = api.token(&[WRITE, READ]).await;
    let other = api.token(&[WRITE, READ]).await;
    let mut created = Vec::new();
    for _ in 0..5 {
        created.push(api.create(&token).await.to_string());
    }
    api.create(&other).await;
    created.reverse();

    let mut seen = Vec::new();
    let mut path = "/transcriptions?limit=2".to_owned();
    let mut pages = 0;
    loop {
        let response = api.get(&token, &path).await;
        assert_eq!(response.status(), StatusCode::OK);
        let link = response
            .headers()
            .get(LINK)
            .map(|v| v.to_str().unwrap().to_owned());
        let page: Value = response.json().await.unwrap();
        pages += 1;
        for item in page["data"].as_array().unwrap() {
            seen.push(item["id"].as_str().unwrap().to_owned());
        }
        match page["next_cursor"].as_str() {
            Some(cursor) => {
                let next = format!("/transcriptions?limit=2&cursor={cursor}");
                assert_eq!(link.unwrap(), format!("<{next}>; rel=\"next\""));
                path = next;
            }
            None => {
                assert!(link.is_none());
                break;
            }
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, created);
}

#[tokio::test]
async fn bad_paging_parameters_get_422() {
    let api = TestApi::spawn().await;
    let token = api.token(&[READ]).await;
    for (query, field) in [
        ("limit=0", "limit"),
        ("limit=101", "limit"),
        ("limit=x", "limit"),
        ("cursor=-1", "cursor"),
        ("cursor=abc", "cursor"),
    ] {
        let response = api.get(&token, &format!("/transcriptions?{query}")).await;
        assert_eq!(
            response.status(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "{query}"
        );
        let errors: Value = response.json().await.unwrap();
        assert!(errors["errors"][field].is_array(), "{query}: {errors}");
    }
}

#[tokio::test]
async fn cursors_are_opaque_owner_scoped_and_refused_for_another_owner_or_tampered() {
    let api = TestApi::spawn().await;
    let alice = api.token(&[WRITE, READ]).await;
    let bob = api.token(&[WRITE, READ]).await;
    for _ in 0..3 {
        api.create(&alice).await;
    }
    // Bob's submissions in between do not show in alice's cursors.
    let first: Value = api
        .get(&alice, "/transcriptions?limit=1")
        .await
        .json()
        .await
        .unwrap();
    let cursor = first["next_cursor"].as_str().unwrap().to_owned();
    for _ in 0..2 {
        api.create(&bob).await;
    }
    let again: Value = api
        .get(&alice, "/transcriptions?limit=1")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        again["next_cursor"],
        cursor.as_str(),
        "no global row number"
    );
    assert!(cursor.parse::<i64>().is_err(), "not a row number: {cursor}");
    assert!(
        cursor
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'),
        "base64url: {cursor}"
    );

    let next = format!("/transcriptions?limit=1&cursor={cursor}");
    assert_eq!(api.get(&alice, &next).await.status(), StatusCode::OK);
    let foreign = api.get(&bob, &next).await;
    assert_eq!(
        foreign.status(),
        StatusCode::UNPROCESSABLE_ENTITY,
        "another owner's cursor"
    );
    let errors: Value = foreign.json().await.unwrap();
    assert!(errors["errors"]["cursor"].is_array(), "{errors}");

    let mut tampered = cursor.into_bytes();
    tampered[0] = if tampered[0] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    let response = api
        .get(&alice, &format!("/transcriptions?cursor={tampered}"))
        .await;
    assert_eq!(
        response.status(),
        StatusCode::UNPROCESSABLE_ENTITY,
        "tampered"
    );
}

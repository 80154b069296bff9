//! Black-box tests of transcription-api: the real server on 127.0.0.1:0 with a real auth
//! server, real tokens and a real queue.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod auth;
mod helpers;
mod outbox;
mod read;
mod report;
mod store;
mod submit;
